"""The ``sra-viz`` command line: headless runs of everything the app shows.

    sra-viz models fetch                      # download + convert the default pair (idempotent)
    sra-viz models info [--teacher X] [--student Y]
    sra-viz align "some text" [--word] [--format table|csv|json]
    sra-viz features "some text" [--mass-mode last_token] [--top 10]
    sra-viz distill --method sra --steps 30 --out runs/sra   # see `sra-viz distill --help`
    sra-viz eval runs/sra --size 8 --format table             # held-out evaluation of a run or a model
    sra-viz export runs/sra --out exported/sra                # the student as a transformers folder
    sra-viz cache info                                        # the teacher cache: folder, texts, size
    sra-viz cache clear                                       # empty it (runs recompute what they need)

``python -m sra_viz ...`` is the same. Bad input exits with status 2 and one line saying what was
wrong; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from .errors import SraVizError
from .fetch import DEFAULT_STUDENT, DEFAULT_TEACHER


def _add_pair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help="default name, folder, .gguf file or HF id")
    p.add_argument("--student", default=DEFAULT_STUDENT, help="default name, folder, .gguf file or HF id")


def _read_text(args: argparse.Namespace) -> str:
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise SraVizError(f"cannot read text file {args.file!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SraVizError(
                f"text file {args.file!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from exc
    if args.text is None:
        raise SraVizError("no text given: pass it as an argument or with --file PATH")
    return args.text


def _require_text(text: str) -> str:
    if not text.strip():
        raise SraVizError(
            f"text is empty or only whitespace ({len(text)} characters): give some text to analyse"
        )
    return text


def _cmd_models(args: argparse.Namespace) -> int:
    if args.models_cmd == "fetch":
        from .fetch import fetch_all

        for name, folder in fetch_all(include_test_tokenizers=not args.no_test_tokenizers).items():
            print(f"{name}\t{folder}")
        return 0
    import pandas as pd

    from .models import load_pair

    pair = load_pair(args.teacher, args.student, device=args.device)
    frame = pd.DataFrame({"teacher": pair.teacher.info.as_dict(), "student": pair.student.info.as_dict()})
    print(frame.to_string())
    return 0


def _cmd_align(args: argparse.Namespace) -> int:
    from .alignment import align_spans
    from .models import load_tokenizer

    text = _require_text(_read_text(args))
    alignment = align_spans(
        text,
        load_tokenizer(args.teacher),
        load_tokenizer(args.student),
        granularity="word" if args.word else "token",
    )
    frame = alignment.to_frame()
    if args.format == "json":
        print(alignment.to_json())
    elif args.format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        cols = ["text", "teacher_start", "teacher_end", "student_start", "student_end"]
        shown = frame[cols].assign(text=frame["text"].map(repr))
        print(shown.to_string())
        for key, value in alignment.stats().items():
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from .extraction import analyze_text
    from .models import load_pair

    if args.top < 1:
        raise SraVizError(f"--top {args.top} must be at least 1 (how many spans to print)")
    text = _require_text(_read_text(args))
    pair = load_pair(args.teacher, args.student, device=args.device)
    with warnings.catch_warnings():  # the truncation note is printed once, below
        warnings.simplefilter("ignore", UserWarning)
        feats = analyze_text(
            text,
            pair,
            mass_mode=args.mass_mode,
            layers=args.layer,
            max_tokens=args.max_tokens,
            windowed=args.windowed,
        )
    if feats.truncated:
        print(f"note: {feats.message}", file=sys.stderr)
    frame = feats.to_frame().sort_values("saliency", ascending=False).head(args.top)
    print(frame.assign(text=frame["text"].map(repr)).to_string())
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from . import paths
    from .distill.config import field_defaults
    from .distill.teacher_cache import TeacherCache

    limit_mb = int(field_defaults()["teacher_cache_mb"])
    cache = TeacherCache(paths.teacher_cache_dir(), limit_mb << 20)
    if args.cache_cmd == "clear":
        gone = cache.clear()
        print(
            f"removed {gone.entries} cached texts in {gone.shards} files ({gone.bytes / 2**20:.1f} MB) "
            f"from {gone.folder}"
        )
        return 0
    info = cache.info()
    print(f"folder\t{info.folder}")
    print(f"texts\t{info.entries}")
    print(f"files\t{info.shards}")
    print(f"size\t{info.bytes / 2**20:.1f} MB")
    print(f"limit\t{limit_mb} MB (a run's --teacher-cache-mb; the least recently used files go first)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .distill.cli import add_distill_parser
    from .distill.config import field_choices
    from .eval_cli import add_eval_parser
    from .export_cli import add_export_parser

    parser = argparse.ArgumentParser(prog="sra-viz", description="Span Representation Alignment toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="fetch the default pair, show model facts")
    msub = models.add_subparsers(dest="models_cmd", required=True)
    fetch_p = msub.add_parser("fetch", help="download and convert the default teacher/student pair")
    fetch_p.add_argument("--no-test-tokenizers", action="store_true", help="skip the GPT-2 test tokenizer")
    info = msub.add_parser("info", help="load a pair and print its facts side by side")
    _add_pair_args(info)
    info.add_argument("--device", default=None)

    for name, helptext in (
        ("align", "print the span alignment of a text"),
        ("features", "print the most salient spans of a text"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("text", nargs="?", default=None)
        p.add_argument("--file", default=None, help="read the text from a UTF-8 file")
        _add_pair_args(p)
        if name == "align":
            p.add_argument("--word", action="store_true", help="word-level spans")
            p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        else:
            p.add_argument("--device", default=None)
            p.add_argument("--mass-mode", default="last_token", choices=field_choices("mass_mode"))
            p.add_argument("--top", type=int, default=15, help="how many spans to print")
            p.add_argument("--layer", type=int, default=-1, help="block whose CoMs and attention are used")
            p.add_argument("--max-tokens", type=int, default=512, help="longest sequence fed to a model")
            p.add_argument(
                "--windowed", action="store_true", help="cover long texts with windows, not truncation"
            )

    cache = sub.add_parser("cache", help="the teacher cache of SRA runs: where it is, its size; clear it")
    csub = cache.add_subparsers(dest="cache_cmd", required=True)
    csub.add_parser("info", help="folder, cached texts, files and size of the teacher cache")
    csub.add_parser("clear", help="remove every cached teacher output (runs recompute what they need)")

    add_distill_parser(sub)
    add_eval_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sra-viz``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "align":
            return _cmd_align(args)
        if args.command == "features":
            return _cmd_features(args)
        if args.command == "cache":
            return _cmd_cache(args)
        if args.command == "distill":
            from .distill.cli import run_distill

            return run_distill(args)
        if args.command == "eval":
            from .eval_cli import run_eval

            return run_eval(args)
        if args.command == "export":
            from .export_cli import run_export

            return run_export(args)
    except SraVizError as exc:
        print(f"sra-viz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sra-viz: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
