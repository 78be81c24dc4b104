"""Median optimizer-step time of the distillation engine against the bare pipeline, same models, same batch.

    (a) bare: teacher forward (no grad, no LM head) + student forward/backward with CE only + AdamW
    (b) SRA:  the engine's SRA step (span + geometric + span logit KD + CE), no teacher cache
    (c) warm: the same SRA step with a warm teacher cache (teacher CoMs and masses read, not computed;
              span logits on V∩ still computed from the cached CoMs through the frozen head)
    (d) ULD:  the engine's ULD step (full teacher logits at the response positions, sorted L1, + CE)

Targets: SRA <= 1.05x bare, warm SRA <= 0.70x bare, SRA <= ULD. Steps of the four are interleaved, in
an order that turns around every round, so that load drift on a shared machine hits them alike. The
SRA and warm ratios are read on the paired rounds: the median of the per-round ratios (each step against
the bare step of the same round, which ran next to it), with a 95 % bootstrap interval (the rounds
resampled). The ratios of the medians and of the fastest steps follow; they move by several per cent
from run to run here. ``--pipelines bare,sra --repeats 100`` times the SRA / bare target alone, in
rounds of two steps. The probe evaluation is not part of a step and is not timed.
Then the teacher cache's size: ``--cache-texts`` training texts at ``--max-length`` written
to an empty cache folder, scaled to 1,000 texts (target <= 50 MB). The cache holds the teacher's span
CoMs at float16 (the losses' targets, cached or not); the first lines say how much that rounding moves
each step-0 loss term against float32 targets.

    python benchmarks/bench_distill.py                          # truncated student (6 blocks), 4 x 64
    python benchmarks/bench_distill.py --variant last_k --k 2 --repeats 6
    python benchmarks/bench_distill.py --set use_kd=false     # what span logit KD costs
    python benchmarks/bench_distill.py --torch-passes         # span KD with torch operations (A/B)
    python benchmarks/bench_distill.py --pipelines bare,sra --repeats 100 --cache-texts 0  # SRA / bare alone
"""

from __future__ import annotations

import argparse
import os
import random
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


def rounding_effect(session, batch) -> dict[str, float]:
    """|L(float16 targets) − L(float32 targets)| / |L(float32 targets)| of each loss term of ``batch``
    at the session's current weights: what the float16 teacher targets (teacher_cache.round_targets)
    change."""
    from sra_viz.distill import teacher_cache

    rounded = session.loss_terms(batch)
    real = teacher_cache.round_targets
    teacher_cache.round_targets = lambda centers: centers  # float32 targets, for this comparison only
    try:
        exact = session.loss_terms(batch)
    finally:
        teacher_cache.round_targets = real
    return {
        name: abs(float(rounded[name].detach()) - float(value.detach()))
        / max(abs(float(value.detach())), 1e-30)
        for name, value in exact.items()
    }


def cache_size(session, n_texts: int, folder: str) -> tuple[float, float, int]:
    """(MB per 1,000 texts, mean spans per text, texts) of the teacher cache filled with the session's
    first ``n_texts`` training texts, batch by batch as its steps would."""
    from sra_viz.distill.batch import collate
    from sra_viz.distill.teacher_cache import TeacherCache, teacher_spans

    cfg, plan = session.config, session.plan
    cache = TeacherCache(folder, 1 << 40)
    items = [session._prepare(e) for e in session.train_examples[:n_texts]]
    pooled = plan.teacher_layers + ([plan.teacher_last] if cfg.use_kd else [])  # as loss_terms.sra_terms
    masses = plan.mass_layers_of("teacher", sorted(set(pooled)))
    for i in range(0, len(items), cfg.batch_size):
        chunk = items[i : i + cfg.batch_size]
        batch = collate(chunk, session.teacher_padding_side, session.student_padding_side)
        teacher_spans(session.teacher, batch, cfg, masses, cache)
    info = cache.info()
    spans = sum(item.n_spans for item in items) / max(1, len(items))
    return info.bytes / max(1, info.entries) * 1000 / 1e6, spans, info.entries


PIPELINES = {"bare": ("sra", "off"), "sra": ("sra", "off"), "warm": ("sra", "on"), "uld": ("uld", "off")}


def report(times: dict[str, list[float]]) -> None:
    """Print each pipeline's median step and the ratios against the bare step. The targets are read on
    the paired rounds (the median of the per-round ratios, with its bootstrap interval): each round's
    steps ran back to back, so a ratio of a pair sees the same load. The ratio of the medians and of the
    fastest steps follow; on a shared machine they move by several per cent from run to run (in two runs
    of 100 rounds each the ratio of the medians moved the other way from the paired one)."""
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, value in med.items():
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"{name:5s} median step {value:.3f} s  (range {spread} s over {len(times[name])} steps)")
    label = {"sra": "SRA", "warm": "SRA with a warm teacher cache"}
    target = {"sra": "<= 1.05", "warm": "<= 0.70"}
    compared = [name for name in label if name in times]
    for name in compared:
        ratios = [t / b for t, b in zip(times[name], times["bare"], strict=True)]
        low, high = bootstrap_interval(ratios)
        print(
            f"{label[name]} / bare = {statistics.median(ratios):.3f}x (target {target[name]}; median of the "
            f"per-round ratios, 95 % bootstrap interval {low:.3f}-{high:.3f})"
        )
    if "uld" in med:
        print(
            f"SRA / ULD = {med['sra'] / med['uld']:.3f}x (target <= 1.00)   "
            f"ULD / bare = {med['uld'] / med['bare']:.3f}x (ratios of the medians)"
        )
    fastest = {name: min(ts) for name, ts in times.items()}  # the step least slowed by other load
    print(
        "ratios of the medians: "
        + ", ".join(f"{name} / bare = {med[name] / med['bare']:.3f}x" for name in compared)
        + "; of the fastest steps: "
        + ", ".join(f"{name} / bare = {fastest[name] / fastest['bare']:.3f}x" for name in compared)
    )


def bootstrap_interval(values: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of the median of ``values`` resampled with replacement ``draws`` times."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.add_argument(
        "--repeats", type=int, default=24, help="timed steps per pipeline (after 2 warm-up steps)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--cache-texts", type=int, default=64, help="texts written to measure the cache size (0 = skip)"
    )
    parser.add_argument(
        "--pipelines",
        default=",".join(PIPELINES),
        help="which pipelines to interleave, bare and sra among them (bare,sra alone: rounds of two steps, "
        "for a tighter SRA / bare with --repeats 100)",
    )
    parser.add_argument(
        "--torch-passes",
        action="store_true",
        help="span KD's passes with torch operations even when sra_viz/_span_kd.c is built (an A/B)",
    )
    args = parser.parse_args(argv)
    chosen = [name for name in PIPELINES if name in args.pipelines.split(",")]
    if not {"bare", "sra"} <= set(chosen) or len(chosen) != len(args.pipelines.split(",")):
        parser.error(f"--pipelines: a comma list of {', '.join(PIPELINES)} holding bare and sra")

    import torch

    import sra_viz.distill.span_kd as span_kd

    if args.torch_passes:
        span_kd._compiled = None
    passes = "compiled (sra_viz/_span_kd.c)" if span_kd._compiled is not None else "torch operations"

    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SRA_VIZ_TEACHER_CACHE"] = f"{tmp}/teacher_cache"  # warmed by the untimed steps
        sessions = {}
        for name in chosen:
            method, cache = PIPELINES[name]
            cfg = session_config(
                method, args, f"{tmp}/{name}", probe_size=2, heldout_size=1, teacher_cache=cache
            )
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
            f"{torch.get_num_threads()}; span KD passes: {passes}"
        )
        effect = rounding_effect(first, batch)  # step 0: before any update
        print(
            "float16 teacher targets move the step-0 losses by (relative to float32 targets): "
            + ", ".join(f"{name} {value:.1e}" for name, value in effect.items())
        )
        runners = {name: bare_step if name == "bare" else engine_step for name in chosen}
        times: dict[str, list[float]] = {name: [] for name in runners}
        for rep in range(args.repeats + 2):
            # the order turns around every round, so that no pipeline always follows the same one (ULD's
            # large allocations slow whatever runs next)
            for name, fn in list(runners.items())[:: 1 if rep % 2 else -1]:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn(sessions[name], batch)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                if rep >= 2:
                    times[name].append(time.perf_counter() - t0)
        if "warm" in sessions:
            warm_cache = sessions["warm"].teacher_cache
            assert warm_cache is not None and warm_cache.hits == (args.repeats + 1) * len(items), "not warm"
        size = cache_size(first, args.cache_texts, f"{tmp}/size") if args.cache_texts > 0 else None
    report(times)
    if size is not None:
        mb, spans, texts = size
        print(
            f"teacher cache: {mb:.1f} MB per 1,000 texts (target <= 50) at max_length {args.max_length}, "
            f"{spans:.1f} spans per text on average, measured on {texts} texts"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
