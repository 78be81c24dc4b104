"""How strongly each loss term pulls on the student: gradient norms per term, on real batches.

AdamW follows the direction of the *summed* gradient, so a term whose gradient is 50x smaller than
another's barely steers training whatever its loss value. This prints, for the first batches of a
session on the default pair, the norm over the student's trainable weights of each term's gradient,
alone (``raw``) and as it enters the total (``weighted``: × α for CE, × (1−α) for the distillation
terms, × λ_geo more for L_geo), plus the span logit KD in both reductions (``kd_weighting`` saliency
and sum). It is the measurement behind the defaults ``kd_weighting="saliency"`` and ``lambda_geo``.

    python benchmarks/term_gradients.py                        # truncated student (6 blocks), 3 batches
    python benchmarks/term_gradients.py --variant last_k --k 2 --batches 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _common import add_session_options, session_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_session_options(parser)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    import torch

    from sra_viz.distill import DistillSession
    from sra_viz.distill.batch import collate
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = session_config("sra", args, tmp, probe_size=1, heldout_size=0)
        session = DistillSession(cfg, pair=pair)
        scale = {"ce": cfg.alpha, "geo": (1 - cfg.alpha) * cfg.lambda_geo}
        norms: dict[str, list[float]] = {}
        values: dict[str, list[float]] = {}
        examples = session.train_examples
        for b in range(args.batches):
            chunk = examples[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = collate(
                [session._prepare(e) for e in chunk],
                session.teacher_padding_side,
                session.student_padding_side,
            )
            for weighting in ("saliency", "sum"):
                session.config.kd_weighting = weighting
                terms = session.loss_terms(batch)
                for name, term in terms.items():
                    key = name if name != "kd" else f"kd ({weighting})"
                    if name != "kd" and weighting == "sum":
                        continue  # the other terms do not depend on the KD reduction
                    grads = torch.autograd.grad(term, session.params, retain_graph=True, allow_unused=True)
                    norm = float(
                        torch.linalg.vector_norm(
                            torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None])
                        )
                    )
                    norms.setdefault(key, []).append(norm)
                    values.setdefault(key, []).append(float(term.detach()))
        print(
            f"student {args.variant} k={args.student_k}; {args.batches} batches of {args.batch_size} x "
            f"{args.max_length}; alpha={cfg.alpha} lambda_geo={cfg.lambda_geo}; median over batches"
        )
        print(f"{'term':16s} {'value':>10s} {'raw grad':>10s} {'weighted':>10s}")
        for key in norms:
            raw = statistics.median(norms[key])
            weight = scale.get(key.split()[0], 1 - cfg.alpha)
            print(f"{key:16s} {statistics.median(values[key]):10.4f} {raw:10.3f} {raw * weight:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
