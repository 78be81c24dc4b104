"""Peak memory of one SRA step with 1 vs 3 mapped layer pairs (per-layer masses keep one attention per
mapped layer, never every layer's).

Each configuration runs in a fresh process (the high-water mark of resident memory cannot be reset):
load the pair, build the session on long texts (8 bundled examples joined per text, so attention,
which grows with L², is visible), then one training step's loss terms + backward. Printed per
configuration: resident memory after set-up, the peak during the step, their difference, and the bytes
of the attention probabilities kept for the masses, against what ``output_attentions=True`` would keep
(every layer of both models). Linux only (reads /proc/self/status).

    python benchmarks/layer_memory.py                        # truncated student (6 blocks), 4 x 512 tokens
    python benchmarks/layer_memory.py --max-length 512 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from _common import add_session_options, session_config

CONFIGS = {"1 pair": [[-1, -1]], "3 pairs": [[5, 1], [11, 3], [-1, -1]]}


def _rss_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(args: argparse.Namespace, pairs: list) -> dict:
    """Run one configuration in this process and return its figures."""
    import torch

    from sra_viz.data import load_bundled_corpus
    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate
    from sra_viz.forward import n_layers
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = load_bundled_corpus()
        with open(f"{tmp}/long.jsonl", "w") as f:
            for i in range(0, 8 * 16, 8):
                f.write(json.dumps({"text": " ".join(e.response for e in corpus[i : i + 8])}) + "\n")
        cfg = session_config(
            "sra",
            args,
            f"{tmp}/run",
            layer_pairs=pairs,
            probe_size=2,
            heldout_size=1,
            data=f"{tmp}/long.jsonl",
        )
        session = DistillSession(cfg, pair=pair)
        items = [session._prepare(e) for e in session.train_examples[: args.batch_size]]
        batch = collate(items, session.teacher_padding_side, session.student_padding_side)
        before = _rss_mb("VmRSS")
        loss = sum(session.loss_terms(batch).values())
        loss.backward()
        peak = _rss_mb("VmHWM")
    length = {s: max(len(i.ids(s)) for i in items) for s in ("teacher", "student")}
    heads = {
        "teacher": session.teacher.model.config.num_attention_heads,
        "student": session.student_view.model.config.num_attention_heads,
    }
    depth = {"teacher": n_layers(session.teacher), "student": n_layers(session.student_view)}
    kept = {
        "teacher": len(set(session.plan.teacher_layers) | {session.plan.teacher_last}),
        "student": len(set(session.plan.student_layers) | {session.plan.student_last}),
    }
    one_layer = {s: args.batch_size * heads[s] * length[s] ** 2 * 4 / 2**20 for s in heads}  # MB, float32
    return {
        "pairs": pairs,
        "rss_after_setup_mb": round(before, 1),
        "peak_during_step_mb": round(peak, 1),
        "step_peak_minus_setup_mb": round(peak - before, 1),
        "attention_kept_mb": round(sum(kept[s] * one_layer[s] for s in heads), 1),
        "output_attentions_would_keep_mb": round(sum(depth[s] * one_layer[s] for s in heads), 1),
        "tokens": length,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.set_defaults(max_length=512)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)  # the child process's one config
    args = parser.parse_args(argv)
    if args.config is not None:
        print(json.dumps(one(args, CONFIGS[args.config])))
        return 0
    child = [a for a in (argv if argv is not None else sys.argv[1:])]
    for name in CONFIGS:
        done = subprocess.run(
            [sys.executable, __file__, *child, "--config", name], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        print(name, done.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
