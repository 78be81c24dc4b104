"""Corpora read through 🤗 ``datasets``: Parquet files and folders of data files.

``datasets.load_dataset`` with its packaged builders (``parquet``, ``json``, ``csv``: no code is
fetched or run) reads the rows; they become :class:`sra_viz.data.Example` fields through the same
column schemas and checks as the other formats (:mod:`sra_viz.example_files`), each problem naming the
file and the row. JSONL/JSON/CSV/TSV *files* keep their own line-exact reader; a folder holds files of
one kind (``*.parquet``, ``*.jsonl``/``*.json`` or ``*.csv``), read in name order.

Example:
    >>> rows = load_dataset_rows("data/train.parquet", FieldMap("question", "answer"))  # doctest: +SKIP
    >>> rows[0]["prompt"], rows[0]["response"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import SraVizError
from .example_files import FieldMap, _check_size, examples_from_records

BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def reads_through_datasets(source: Any) -> bool:
    """True for a Parquet file or a folder (the rest is read by :mod:`sra_viz.example_files`)."""
    if not isinstance(source, (str, Path)) or (isinstance(source, str) and "\n" in source):
        return False
    path = Path(source).expanduser()
    return path.suffix.lower() == ".parquet" or path.is_dir()


def _data_files(path: Path) -> tuple[str, list[Path]]:
    """(builder, files) of a file or a folder of files of one kind."""
    if not path.exists():
        raise SraVizError(f"no such file or folder: {str(path)!r}; give a Parquet, JSONL, JSON or CSV file")
    if path.is_file():
        return BUILDERS[path.suffix.lower()], [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in BUILDERS)
    kinds = sorted({BUILDERS[p.suffix.lower()] for p in files})
    if not files:
        raise SraVizError(
            f"folder {str(path)!r} holds no .parquet, .jsonl, .json or .csv file; give a folder of data files"
        )
    if len(kinds) > 1:
        raise SraVizError(
            f"folder {str(path)!r} mixes {' and '.join(kinds)} files; keep files of one kind in a folder"
        )
    return kinds[0], files


def load_dataset_rows(source: str | Path, fields: FieldMap | None = None, max_bytes: int = 0) -> list[dict]:
    """The Example fields of every row of a Parquet file or a folder (``max_bytes``: size cap, 0 = none)."""
    path = Path(source).expanduser()
    builder, files = _data_files(path)
    name = path.name
    if max_bytes:
        _check_size(sum(f.stat().st_size for f in files), max_bytes, name)
    import datasets

    quiet = datasets.is_progress_bar_enabled()
    if quiet:  # errors stay one line on stderr: no "Generating train split" bars
        datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # datasets/pyarrow raise many types for an unreadable file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SraVizError(f"{name} could not be read as {builder} ({first}); check the file") from None
    finally:
        if quiet:
            datasets.enable_progress_bars()
    schema = fields.schema() if fields is not None and fields.given else None
    if schema is not None:
        columns = {str(c).strip().lower() for c in table.column_names}
        for field, (column, *_) in schema.columns.items():
            if column not in columns:
                flag = "--prompt-field" if field == "prompt" else "--response-field"
                raise SraVizError(
                    f"{name} has no column {column!r} ({flag}); its columns are "
                    f"{', '.join(table.column_names) or 'none'}"
                )
    if len(table) == 0:
        raise SraVizError(f"{name} has no rows: give a file with at least one example")

    def records() -> Iterator[tuple[str, dict]]:
        for number, row in enumerate(table, start=1):
            yield f"row {number}", row

    return examples_from_records(records(), name, schema)
