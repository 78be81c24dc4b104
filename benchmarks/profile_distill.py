"""Where the time of a distillation step goes: torch.profiler over a few steps of the bare pipeline,
the SRA step without a teacher cache and the SRA step with a warm one, built as ``bench_distill.py``
builds them (same models, same batch, same options).

Each part of the loss is wrapped in a ``record_function`` label (``part/...``) for the profile only, so
the first table gives milliseconds per step for the forward parts, the backward and the optimizer;
the second the heaviest operators of each pipeline (their input shapes with ``--shapes``).

    python benchmarks/profile_distill.py                    # 3 profiled steps each, after 2 warm-up steps
    python benchmarks/profile_distill.py --steps 5 --top 25 --shapes
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile

from _common import add_session_options, session_config
from bench_distill import bare_step, engine_step

PARTS = {  # module attribute -> label of its time in the table
    "teacher_spans": "teacher side (forward or cache read)",
    "teacher_forward": "teacher forward (bare)",
    "student_forward": "student forward + head",
    "saliency_weights": "saliency weights",
    "span_loss": "L_span",
    "geometric_loss": "L_geo",
    "student_span_logits": "KD: student span logits",
    "span_logit_kd": "KD: KL rows",
    "pooled_span_kd": "KD: pooled span logits + KL (fused)",
    "pooled_span_kd_and_ce": "KD + CE: pooled span logits, KL and CE (fused)",
    "ce_term": "CE",
}


def _label(fn, name: str):
    import torch

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with torch.profiler.record_function(f"part/{name}"):
            return fn(*args, **kwargs)

    return wrapped


def _instrument(sessions) -> None:
    """Label the parts of ``loss_terms`` and the teacher's V∩ logits (in place, for this process)."""
    from sra_viz.distill import loss_terms

    for attr, name in PARTS.items():
        fn = getattr(loss_terms, attr)
        if not hasattr(fn, "__wrapped__"):
            setattr(loss_terms, attr, _label(fn, name))
    for session in sessions:
        heads = session.heads
        if heads.teacher_shared_rows is not None and "teacher_shared_logits" not in vars(heads):
            heads.teacher_shared_logits = _label(heads.teacher_shared_logits, "KD: teacher V∩ logits")


def _optimizer_labelled(fn):
    """``bench_distill``'s step with its backward and optimizer labelled too."""
    import torch

    def step(session, batch):
        real_backward = torch.Tensor.backward
        real_step = session.optimizer.step

        def backward(self, *args, **kwargs):
            with torch.profiler.record_function("part/backward"):
                return real_backward(self, *args, **kwargs)

        def opt_step(*args, **kwargs):
            with torch.profiler.record_function("part/optimizer (AdamW)"):
                return real_step(*args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign]
        session.optimizer.step = opt_step
        try:
            with torch.profiler.record_function("part/step (total)"):
                fn(session, batch)
        finally:
            torch.Tensor.backward = real_backward  # type: ignore[method-assign]
            del session.optimizer.step

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per pipeline")
    parser.add_argument("--top", type=int, default=15, help="operators listed per pipeline")
    parser.add_argument("--shapes", action="store_true", help="group the operators by input shape too")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SRA_VIZ_TEACHER_CACHE"] = f"{tmp}/teacher_cache"
        sessions = {}
        for name, cache in (("bare", "off"), ("sra", "off"), ("warm", "on")):
            cfg = session_config(
                "sra", args, f"{tmp}/{name}", probe_size=2, heldout_size=1, teacher_cache=cache
            )
            sessions[name] = DistillSession(cfg, pair=pair)
        first = sessions["sra"]
        _instrument(sessions.values())
        items = [first._prepare(e) for e in first.train_examples[: args.batch_size]]
        batch = collate(items, first.teacher_padding_side, first.student_padding_side)
        runners = {"bare": bare_step, "sra": engine_step, "warm": engine_step}
        for name, fn in runners.items():  # warm-up; fills the teacher cache of "warm"
            for _ in range(2):
                fn(sessions[name], batch)
        tables = {}
        for name, fn in runners.items():
            labelled = _optimizer_labelled(fn)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                for _ in range(args.steps):
                    labelled(sessions[name], batch)
            tables[name] = prof.key_averages(group_by_input_shape=args.shapes)
    parts: dict[str, dict[str, float]] = {}
    for name, events in tables.items():
        for event in events:
            if event.key.startswith("part/"):
                ms = event.cpu_time_total / 1e3 / args.steps
                parts.setdefault(event.key[5:], {})[name] = ms
    print(f"ms per step (mean of {args.steps}; parts overlap: a part's time includes what it calls)")
    print(f"{'part':42s} {'bare':>8s} {'sra':>8s} {'warm':>8s}")
    for part, row in sorted(parts.items(), key=lambda kv: -max(kv[1].values())):
        print(f"{part:42s} " + " ".join(f"{row.get(n, 0.0):8.1f}" for n in runners))
    for name, events in tables.items():
        print(f"\n== {name}: top {args.top} operators by self CPU time")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
