"""``sra-viz distill``: run, resume or extend a distillation run from the command line.

    sra-viz distill --method sra --steps 30 --student-variant truncated --student-k 6 --out runs/sra
    sra-viz distill --method uld --steps 30 --student-variant truncated --out runs/uld --data my.jsonl
    sra-viz distill --resume runs/sra --steps 60          # continue (or extend) a stopped/killed run
    torchrun --nproc_per_node 2 -m sra_viz distill --steps 10 --student-variant truncated
    accelerate launch -m sra_viz distill --steps 10

Every ``DistillConfig`` field is a flag (``--lambda-geo 3``, ``--no-geo``, ``--layer-pairs=-1:-1,12:4``);
see ``sra-viz distill --help``. Ctrl-C (or SIGTERM) stops after the current step and writes a
checkpoint; a second Ctrl-C aborts. One process writes a run at a time: ``--resume`` of a run that is
being written is refused. Exit status: 0 done or stopped, 1 the run failed (non-finite loss or
weights, an error inside a step; status.json says why), 2 bad input (missing or malformed data file,
unknown model, bad option, a run folder that cannot be written or resumed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from typing import Any

from .config import DistillConfig

_BOOL_FLAGS = {
    "use_span": "span",
    "use_geo": "geo",
    "use_kd": "kd",
    "use_ce": "ce",
    "use_dynamics": "dynamics",
}
_RESUME_OK = {"steps", "device"}


def parse_layer_pairs(text: str) -> list[list[int]]:
    """``"-1:-1,12:4"`` -> ``[[-1, -1], [12, 4]]`` (teacher:student block indices).

    Example:
        >>> parse_layer_pairs("-1:-1, 12:4")
        [[-1, -1], [12, 4]]
    """
    pairs = []
    for part in text.split(","):
        bits = part.strip().split(":")
        try:
            if len(bits) != 2:
                raise ValueError
            pairs.append([int(bits[0]), int(bits[1])])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"layer pair {part.strip()!r} is not TEACHER:STUDENT block indices such as -1:-1 or 12:4"
            ) from None
    return pairs


def _flag_type(f: dataclasses.Field) -> Any:
    if f.metadata.get("flag_type") == "pairs":
        return parse_layer_pairs
    default = f.default
    if isinstance(default, bool):
        return None
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def add_distill_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``distill`` subcommand (every DistillConfig field is a flag) on ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
        >>> _ = add_distill_parser(sub)
        >>> parser.parse_args(["distill", "--method", "uld", "--no-geo"]).use_geo
        False
    """
    p = subparsers.add_parser(
        "distill",
        help="run SRA or a token-level baseline (ULD, exact-token KD) and log probe geometry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    p.add_argument(
        "--config", default=None, metavar="FILE", help="a DistillConfig JSON file; flags override it"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in dataclasses.fields(DistillConfig):
        if f.metadata.get("flag") is False:
            continue
        help_text = f.metadata.get("help", "")
        # ignore: mypy cannot tell from `f.default is MISSING` that default_factory is set
        default = (
            f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        )
        if f.metadata.get("flag_type") == "pairs":
            help_text += (
                "; as TEACHER:STUDENT[,...], written --layer-pairs=-1:-1 (with '=') for negative indices"
            )
        help_text += f" (default: {default})"
        name = "--" + _BOOL_FLAGS.get(f.name, f.name).replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(
                name, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            p.add_argument(
                name,
                dest=f.name,
                type=_flag_type(f),
                default=None,
                choices=f.metadata.get("choices"),
                metavar=None if "choices" in f.metadata else f.name.upper(),
                help=help_text,
            )
    return p


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    """DistillConfig from ``--config`` (if any) overridden by the flags given; validated.

    Example:
        >>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
        >>> _ = add_distill_parser(sub)
        >>> config_from_args(parser.parse_args(["distill", "--steps", "5"])).steps
        5
    """
    from ..errors import SraVizError

    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            with open(args.config, encoding="utf-8") as fh:
                base = json.loads(fh.read())
        except OSError as exc:
            raise SraVizError(f"cannot read --config {args.config!r}: {exc.strerror}") from exc
        except ValueError as exc:  # bad UTF-8 or bad JSON
            raise SraVizError(f"--config {args.config!r} is not a JSON file: {exc}") from exc
        if not isinstance(base, dict):
            raise SraVizError(f"--config {args.config!r} must hold a JSON object, got {type(base).__name__}")
    base.update(_given(args))  # the flags given override the file, before any check
    return DistillConfig.from_dict(base)


def _check_data(config: DistillConfig) -> None:
    """Fail fast (before loading models) on a missing or malformed data file."""
    if config.data is None:
        return
    from ..data import load_examples

    load_examples(config.data, prompt_field=config.prompt_field, response_field=config.response_field)


def run_distill(args: argparse.Namespace) -> int:
    """Run the ``distill`` subcommand; returns the exit status (see the module docstring)."""
    from ..errors import SraVizError
    from .session import DistillSession

    def say(message: str) -> None:
        print(f"[distill] {message}", file=sys.stderr, flush=True)

    try:
        if args.resume:
            extra = sorted(set(_given(args)) - _RESUME_OK)
            if extra or args.config:
                flags = ", ".join("--" + e.replace("_", "-") for e in extra) or "--config"
                raise SraVizError(
                    f"--resume continues {args.resume!r} with its saved config; only --steps and --device "
                    f"may be given with it, not {flags}"
                )
            session = DistillSession.resume(args.resume, progress=say, steps=args.steps, device=args.device)
        else:
            config = config_from_args(args)
            _check_data(config)
            session = DistillSession(config, progress=say)
    except SraVizError as exc:
        print(f"sra-viz distill: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_with_progress(session, quiet=args.quiet, say=say)
    finally:
        _shutdown(session)


def _run_with_progress(session, quiet: bool, say) -> int:
    from tqdm import tqdm

    from .runs import last_metrics

    cfg = session.config
    main = session.dist.is_main
    bar = tqdm(
        total=cfg.steps,
        initial=session.step_count,
        disable=quiet or not main,
        unit="step",
        desc=f"{cfg.method}",
        dynamic_ncols=True,
    )

    def on_row(row: dict) -> None:
        bar.update(1)
        shown = {k: row[k] for k in ("loss", "ce", "probe_cka", "probe_cos") if row.get(k) is not None}
        bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)

    stopping = {"asked": False}

    def on_signal(signum, _frame):
        if stopping["asked"]:
            raise KeyboardInterrupt
        stopping["asked"] = True
        session.stop()
        say("stopping after this step (a checkpoint is written); press Ctrl-C again to abort")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = session.run(callback=on_row)
    finally:
        bar.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    if main:
        last = last_metrics(session.history, failed=status == "failed")
        shown = ", ".join(
            f"{k}={last[k]:.4g}"
            for k in ("probe_cos", "probe_cka", "probe_gram_distance", "heldout_loss")
            if k in last
        )
        if shown and last.get("probe_step") != session.step_count:
            shown += f" (measured at step {last['probe_step']})"
        say(
            f"{status} at step {session.step_count}/{cfg.steps}; run directory {cfg.out}"
            + (f"; {shown}" if shown else "")
        )
    if status == "failed":
        print(f"sra-viz distill: run failed: {session.error}", file=sys.stderr)
        return 1
    return 0


def _shutdown(session) -> None:
    import torch.distributed as dist

    if session.dist.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
