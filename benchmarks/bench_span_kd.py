"""Span logit KD alone, forward + backward, on the default pair's batch: the fused step the engine runs
(:func:`sra_viz.distill.span_kd.pooled_span_kd`) against the composition it replaced (``pool_spans`` from
the V∩ mask, then ``span_logit_kd`` at τ = 1, over B). Both include the teacher's V∩ logits
(``c @ W_head[V∩]ᵀ``), timed alone as well. Then L_KD with the student's CE, as the engine trains them
(:func:`sra_viz.distill.span_kd.pooled_span_kd_and_ce`, one gradient buffer) against the two terms taken
apart (``pooled_span_kd`` + ``ce_term``, whose gradients autograd adds), and CE alone (``ce_term``, as the
bare pipeline trains it): "kd and ce" minus "ce alone" minus the teacher's V∩ logits is what span KD adds
to a step on the student's side. Steps alternate between the variants so that load drift hits them
alike; the first lines check that they agree (loss, largest gradient difference).

    python benchmarks/bench_span_kd.py                # 12 timed steps each
    python benchmarks/bench_span_kd.py --repeats 20
    python benchmarks/bench_span_kd.py --torch-passes    # the torch operations the compiled passes replace
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import add_session_options, session_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.add_argument("--repeats", type=int, default=12, help="timed steps each (after 2 warm-up steps)")
    parser.add_argument(
        "--torch-passes",
        action="store_true",
        help="span KD's passes with torch operations even when sra_viz/_span_kd.c is built (an A/B)",
    )
    args = parser.parse_args(argv)

    import torch

    import sra_viz.distill.span_kd as span_kd

    if args.torch_passes:
        span_kd._compiled = None
    passes = "compiled (sra_viz/_span_kd.c)" if span_kd._compiled is not None else "torch operations"

    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate, label_positions
    from sra_viz.distill.loss_terms import ce_term, student_forward, student_span_logits
    from sra_viz.distill.span_kd import pooled_span_kd, pooled_span_kd_and_ce
    from sra_viz.distill.teacher_cache import teacher_spans
    from sra_viz.features import saliency_weights
    from sra_viz.losses import span_logit_kd
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = session_config("sra", args, f"{tmp}/s", probe_size=2, heldout_size=1, teacher_cache="off")
        session = DistillSession(cfg, pair=pair)
        items = [session._prepare(e) for e in session.train_examples[: args.batch_size]]
        batch = collate(items, session.teacher_padding_side, session.student_padding_side)
    plan, heads, last = session.plan, session.heads, session.plan.student_last
    t_masses = plan.mass_layers_of("teacher", [plan.teacher_last])
    teacher = teacher_spans(session.teacher, batch, cfg, t_masses, None)
    with torch.no_grad():
        side, token_logits = student_forward(
            session.student_view, heads, batch, cfg, [last], plan.mass_layers_of("student", [last]), last, []
        )
    valid = batch.span_valid  # (B, N)
    c_t = teacher.centers[plan.teacher_last][valid]  # (M, D_T)
    a = saliency_weights(teacher.span_mass[plan.teacher_last], valid, cfg.saliency_power)[valid]  # (M,)
    logits = token_logits.clone().requires_grad_(True)  # (B, L_S, V_S)

    def teacher_logits():
        return heads.teacher_shared_logits(c_t, tau=cfg.tau)  # (M, V_S)

    def unfused():
        z_s = student_span_logits(heads, logits, side, last, valid, cfg.tau)  # (M, V_S)
        every = torch.ones((1, z_s.shape[0]), dtype=torch.bool)
        loss = span_logit_kd(z_s[None], teacher_logits()[None], every, 1.0, a[None]) / valid.shape[0]
        loss.backward()
        return loss

    def fused():
        mass = side.pool_mass[last]
        loss = pooled_span_kd(
            logits, side.span_index, mass, valid, teacher_logits(), a, cfg.tau, heads.shared_mask
        )
        loss.backward()
        return loss

    rows, pos, targets = label_positions(batch, "student")
    flat_rows = rows * logits.shape[1] + pos  # (R,) label rows of the flattened tokens

    def kd_then_ce():
        mass = side.pool_mass[last]
        kd = pooled_span_kd(
            logits, side.span_index, mass, valid, teacher_logits(), a, cfg.tau, heads.shared_mask
        )
        loss = kd + ce_term(batch, logits)
        loss.backward()
        return loss

    def kd_and_ce():
        mass = side.pool_mass[last]
        kd, ce = pooled_span_kd_and_ce(
            logits,
            side.span_index,
            mass,
            valid,
            teacher_logits(),
            a,
            cfg.tau,
            heads.shared_mask,
            flat_rows,
            targets,
        )
        loss = kd + ce
        loss.backward()
        return loss

    def ce_alone():
        loss = ce_term(batch, logits)
        loss.backward()
        return loss

    results = {}
    for name, fn in (
        ("unfused", unfused),
        ("fused", fused),
        ("kd then ce", kd_then_ce),
        ("kd and ce", kd_and_ce),
    ):
        logits.grad = None
        results[name] = (float(fn().detach()), logits.grad.clone())
    for one, other in (("unfused", "fused"), ("kd then ce", "kd and ce")):
        gap = float((results[other][1] - results[one][1]).abs().max())
        print(
            f"{tuple(logits.shape)} token logits, {int(valid.sum())} spans, {len(flat_rows)} label rows; "
            "loss "
            f"{one} {results[one][0]:.6f}, {other} {results[other][0]:.6f}; largest gradient difference "
            f"{gap:.1e} (largest gradient {float(results[one][1].abs().max()):.1e}); threads "
            f"{torch.get_num_threads()}; span KD passes: {passes}"
        )
    runners = {
        "unfused": unfused,
        "fused": fused,
        "kd then ce": kd_then_ce,
        "kd and ce": kd_and_ce,
        "ce alone": ce_alone,
        "teacher V∩ logits": teacher_logits,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(args.repeats + 2):
        order = list(runners.items()) if rep % 2 else list(reversed(runners.items()))
        for name, fn in order:
            logits.grad = None
            t0 = time.perf_counter()
            fn()
            if rep >= 2:
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:18s} median {statistics.median(ts) * 1e3:6.1f} ms  fastest {min(ts) * 1e3:6.1f} ms")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    fastest = {name: min(ts) for name, ts in times.items()}
    for one, other in (("unfused", "fused"), ("kd then ce", "kd and ce")):
        print(
            f"{other} / {one} = {med[other] / med[one]:.3f}x (median), "
            f"{fastest[other] / fastest[one]:.3f}x (fastest)"
        )
    added = med["kd and ce"] - med["ce alone"] - med["teacher V∩ logits"]
    print(f"span KD on the student's side, over CE alone: {added * 1e3:.1f} ms (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
