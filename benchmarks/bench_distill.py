"""Median optimizer-step time of the distillation engine against the bare pipeline, same models, same batch.

    (a) bare: teacher forward (no grad, no LM head) + student forward/backward with CE only + AdamW
    (b) SRA:  the engine's SRA step (span + geometric + span logit KD + CE)
    (c) ULD:  the engine's ULD step (full teacher logits at the response positions, sorted L1, + CE)

Targets: SRA <= 1.10x bare and SRA <= ULD. Steps of the three are interleaved so that load drift on
a shared machine hits them alike; the probe evaluation is not part of a step and is not timed.

    python benchmarks/bench_distill.py                          # truncated student (6 blocks), 4 x 64
    python benchmarks/bench_distill.py --variant last_k --k 2 --repeats 6
    python benchmarks/bench_distill.py --set use_kd=false     # what span logit KD costs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import add_session_options, session_config


def _optimizer_step(session, terms) -> None:
    import torch

    from sra_viz.losses import total_loss

    loss = total_loss(terms, alpha=session.config.alpha, lambda_geo=session.config.lambda_geo)
    session.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(session.params, session.config.max_grad_norm)
    session.optimizer.step()


def bare_step(session, batch) -> None:
    """Teacher forward + student forward/backward on CE: what any distillation step must pay."""
    from sra_viz.distill.loss_terms import ce_term, student_forward, teacher_forward

    plan, cfg = session.plan, session.config
    teacher_forward(session.teacher, batch, cfg, [plan.teacher_last], {}, centers_for=[])
    _, logits = student_forward(
        session.student_view, session.heads, batch, cfg, [plan.student_last], {}, plan.student_last
    )
    _optimizer_step(session, {"ce": ce_term(batch, logits)})


def engine_step(session, batch) -> None:
    _optimizer_step(session, session.loss_terms(batch))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.add_argument(
        "--repeats", type=int, default=8, help="timed steps per pipeline (after 2 warm-up steps)"
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    import torch

    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, method in (("bare", "sra"), ("sra", "sra"), ("uld", "uld")):
            cfg = session_config(method, args, f"{tmp}/{name}", probe_size=2, heldout_size=1)
            sessions[name] = DistillSession(cfg, pair=pair)
        first = sessions["sra"]
        items = [first._prepare(e) for e in first.train_examples[: args.batch_size]]
        batch = collate(items, first.teacher_padding_side, first.student_padding_side)
        tokens_t = sum(len(i.teacher_ids) for i in items)
        tokens_s = sum(len(i.student_ids) for i in items)
        print(
            f"device {first.device}; student {args.variant} k={args.student_k} "
            f"({first.student.trainable_params / 1e6:.1f} M trainable); batch {args.batch_size} texts, "
            f"{tokens_t} teacher / {tokens_s} student tokens, {batch.n_spans} spans max; threads "
            f"{torch.get_num_threads()}"
        )
        runners = {"bare": bare_step, "sra": engine_step, "uld": engine_step}
        times: dict[str, list[float]] = {name: [] for name in runners}
        for rep in range(args.repeats + 2):
            for name, fn in runners.items():
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn(sessions[name], batch)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                if rep >= 2:
                    times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, value in med.items():
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"{name:5s} median step {value:.3f} s  (range {spread} s over {len(times[name])} steps)")
    sra_vs_bare, sra_vs_uld = med["sra"] / med["bare"], med["sra"] / med["uld"]
    print(
        f"SRA / bare = {sra_vs_bare:.3f}x (target <= 1.10)   SRA / ULD = {sra_vs_uld:.3f}x (target <= 1.00)  "
        f" ULD / bare = {med['uld'] / med['bare']:.3f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
