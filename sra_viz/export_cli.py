"""``sra-viz export RUN_DIR --out DIR``: a run's trained student as a complete transformers model folder.

    sra-viz export runs/sra --out exported/sra-student
    sra-viz export runs/sra --out exported/sra-student --force     # replace a non-empty folder

The folder (model.safetensors, config.json, generation_config.json, tokenizer, model card README.md)
loads with ``AutoModelForCausalLM.from_pretrained(DIR)``, without sra_viz (see
:mod:`sra_viz.distill.export`). Exit status 2 on bad input (not a run, no checkpoint, a non-empty --out).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import SraVizError


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
        >>> add_export_parser(sub).parse_args(["runs/sra", "--out", "e"]).force
        False
    """
    p = subparsers.add_parser(
        "export",
        help="write a run's student as a transformers model folder with a model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a distillation run directory with a checkpoint")
    p.add_argument("--out", required=True, help="the model folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace --out even if it exists and is not empty")
    p.add_argument("--device", default="cpu", help="where the student is rebuilt (default: cpu)")
    return p


def run_export(args: argparse.Namespace) -> int:
    """The ``export`` subcommand; returns the exit status."""
    from .distill.export import export_run

    try:
        out = export_run(args.run_dir, args.out, force=args.force, device=args.device)
    except SraVizError as exc:
        print(f"sra-viz export: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0
