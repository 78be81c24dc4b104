"""What the distillation benchmarks share: the student/batch options, ``--set FIELD=VALUE`` overrides,
and the DistillConfig they build from them (every other field keeps its default)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_session_options(parser: argparse.ArgumentParser, variant: str = "truncated", k: int = 6) -> None:
    """--variant, --student-k (alias --k), --batch-size, --max-length, --set (repeatable), --seed."""
    from sra_viz.distill.config import field_choices

    parser.add_argument("--variant", default=variant, choices=field_choices("student_variant"))
    parser.add_argument("--student-k", "--k", dest="student_k", type=int, default=k)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other DistillConfig field, e.g. --set lambda_geo=3 --set kd_weighting=sum",
    )


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lambda_geo=3", "kd_weighting=sum"]`` -> ``{"lambda_geo": 3, "kd_weighting": "sum"}`` (JSON values,
    else the string).

        >>> overrides(["lambda_geo=3", "kd_weighting=sum", "use_kd=false"])
        {'lambda_geo': 3, 'kd_weighting': 'sum', 'use_kd': False}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def session_config(method: str, args: argparse.Namespace, out: str, **fields: Any):
    """The DistillConfig of one benchmark session: the shared options, then ``fields``, then ``--set``."""
    from sra_viz.distill import DistillConfig

    return DistillConfig(
        method=method,
        student_variant=args.variant,
        student_k=args.student_k,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        out=out,
        **{**fields, **overrides(args.set)},
    )
