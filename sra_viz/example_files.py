"""Reading example files: bytes from a path, str, bytes or upload (size-capped), UTF-8 decoding, format
detection (JSONL, JSON, CSV/TSV) and the four accepted column schemas (or the columns a
:class:`FieldMap` names), turned into the fields of
:class:`sra_viz.data.Example` (``prompt``, ``response``, ``id``, ``category``). Every problem is a
``SraVizError`` naming the file and line. The public loaders are in :mod:`sra_viz.data`.

A chat row, ``messages: [{role, content}, ...]``, becomes prompt = the turns before its last assistant
turn rendered plainly (:func:`format_chat_prompt`), response = that last assistant turn. Plain, not the
student's chat template: the examples are read before any model is loaded, and the same rows then
mean the same text to every student of a comparison.

Example:
    >>> parse_records('{"prompt": "2+2?", "response": "4"}', "input", "jsonl")[0]["response"]
    '4'
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sra_viz.errors import SraVizError

FORMATS = ("jsonl", "json", "csv", "tsv")

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}


def format_prompt(instruction: str, context: str = "") -> str:
    """Dolly-style prompt: ``Instruction: ...``, then ``Context: ...`` if any, then ``Response:``.

    Lines are joined by newlines and the instruction and context are stripped.

    Example:
        >>> format_prompt("Summarise the text.", "Cats sleep a lot.")
        'Instruction: Summarise the text.\\nContext: Cats sleep a lot.\\nResponse:'
    """
    lines = [f"Instruction: {instruction.strip()}"]
    if context.strip():
        lines.append(f"Context: {context.strip()}")
    lines.append("Response:")
    return "\n".join(lines)


def format_chat_prompt(turns: list[tuple[str, str]]) -> str:
    """Chat turns before the answer, one ``Role: content`` line each, then ``Assistant:``.

    Roles are capitalised (``user`` -> ``User``) and contents stripped, as in :func:`format_prompt`.

    Example:
        >>> format_chat_prompt([("system", "Be brief."), ("user", "What is 2+2?")])
        'System: Be brief.\\nUser: What is 2+2?\\nAssistant:'
    """
    lines = [f"{role.strip().capitalize()}: {content.strip()}" for role, content in turns]
    return "\n".join([*lines, "Assistant:"])


# ---------------------------------------------------------------- reading bytes


def read_source(source: Any, max_bytes: int) -> tuple[bytes | str, str]:
    """Return (content, display name) of a path, str content, bytes or file-like object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | str = bytes(source)
        _check_size(len(data), max_bytes, "input")
        return data, "input"
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        return _read_path(Path(os.fspath(source)).expanduser(), max_bytes)
    if isinstance(source, str):
        _check_size(len(source.encode("utf-8")), max_bytes, "input")
        return source, "input"
    if hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) and raw_name else "upload"
        try:
            source.seek(0)  # an upload read once before (e.g. on a page rerun) starts at its end
        except (AttributeError, OSError, ValueError):
            pass
        data = source.read(max_bytes + 1)
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
        _check_size(size, max_bytes, name, exact=False)  # only max_bytes + 1 were read
        return data, name
    raise SraVizError(
        f"cannot read examples from a {type(source).__name__}: give a file path, the file's content as str "
        "or bytes, or a file-like object such as an uploaded file"
    )


def _looks_like_path(value: str) -> bool:
    if "\n" in value or len(value) > 4096 or value.lstrip().startswith(("{", "[")):
        return False
    path = Path(value).expanduser()
    # one word with a file extension ("missing.txt") is a file name, not a one-line CSV
    named_like_a_file = re.fullmatch(r"[^\s,;\t]+\.[A-Za-z0-9]{1,8}", value.strip()) is not None
    return path.exists() or path.suffix.lower() in _EXTENSIONS or os.sep in value or named_like_a_file


def _read_path(path: Path, max_bytes: int) -> tuple[bytes, str]:
    if not path.exists():
        raise SraVizError(f"file not found: {path}: check the path")
    if not path.is_file():
        raise SraVizError(f"{path} is not a file: give a JSONL or CSV file")
    _check_size(path.stat().st_size, max_bytes, path.name)
    return path.read_bytes(), path.name


def _check_size(size: int, max_bytes: int, name: str, exact: bool = True) -> None:
    if size > max_bytes:
        found = f" ({_size(size)})" if exact else ""
        raise SraVizError(
            f"{name} is larger than the max_bytes limit of {_size(max_bytes)}{found}: use a smaller file or "
            "pass a larger max_bytes"
        )


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes:,} bytes"


def decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SraVizError(
            f"{name} line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}): save "
            "the file as UTF-8"
        ) from None


def resolve_format(fmt: str | None, name: str, text: str) -> str:
    first = text.lstrip()[:1]
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise SraVizError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)} or None to detect it")
    else:
        fmt = _EXTENSIONS.get(Path(name).suffix.lower()) or {"{": "jsonl", "[": "json"}.get(first, "csv")
    if fmt == "json" and first == "{":  # JSON Lines saved with a .json name
        fmt = "jsonl"
    return fmt


# ---------------------------------------------------------------- records


def parse_records(text: str, name: str, fmt: str, fields: FieldMap | None = None) -> list[dict[str, str]]:
    """The Example fields of every record of ``text`` in format ``fmt``; ``name`` is for messages.

    ``fields`` names the prompt/response columns; without it the schema is detected from the columns.
    """
    schema = fields.schema() if fields is not None and fields.given else None
    if fmt == "jsonl":
        records = _jsonl_records(text, name)
    elif fmt == "json":
        records = _json_records(text, name)
    else:
        records = _csv_records(text, name, "\t" if fmt == "tsv" else None, schema)
    return examples_from_records(records, name, schema)


def examples_from_records(
    records: Iterable[tuple[str, dict]], name: str, schema: _Schema | None = None
) -> list[dict[str, str]]:
    """The Example fields of ``(where, record)`` pairs: one schema for all (detected from the first
    record unless given); every problem names ``name`` and the record's ``where``."""
    examples: list[dict[str, str]] = []
    for where, record in records:
        schema = schema or _Schema.detect(record, name, where)
        examples.append(schema.example(record, name, where))
    if not examples:
        raise SraVizError(f"{name} has no examples: add at least one row after the header")
    return examples


def _jsonl_records(text: str, name: str) -> Iterator[tuple[str, dict]]:
    # split on "\n" only: str.splitlines would also split inside strings holding U+2028 and friends
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SraVizError(
                f"{name} line {number}: invalid JSON ({err.msg} at column {err.colno}): each line must be "
                'one JSON object such as {"prompt": "...", "response": "..."}'
            ) from None
        if not isinstance(record, dict):
            raise SraVizError(
                f"{name} line {number}: expected a JSON object, found {_json_type(record)}: each line must "
                "be "
                'one object such as {"prompt": "...", "response": "..."}'
            )
        yield f"line {number}", record


def _json_records(text: str, name: str) -> Iterator[tuple[str, dict]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise SraVizError(
            f"{name} line {err.lineno}: invalid JSON ({err.msg} at column {err.colno})"
        ) from None
    if not isinstance(items, list):
        raise SraVizError(f"{name}: expected a JSON list of objects, found {_json_type(items)}")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise SraVizError(f"{name} item {number}: expected a JSON object, found {_json_type(item)}")
        yield f"item {number}", item


def _csv_records(
    text: str, name: str, delimiter: str | None, schema: _Schema | None = None
) -> Iterator[tuple[str, dict]]:
    delimiter = delimiter or _sniff_delimiter(text.split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [column.strip().lower() for column in next(reader)]
        schema = schema or _Schema.detect(dict.fromkeys(header), name, "line 1 (header)")
        schema.check_columns(header, name)
        previous_end = reader.line_num
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise SraVizError(
                    f"{name} line {start}: expected {len(header)} fields ({', '.join(header)}), found "
                    f"{len(row)}: quote values that contain the delimiter or line breaks"
                )
            yield f"line {start}", dict(zip(header, row, strict=True))
    except csv.Error as err:
        raise SraVizError(f"{name} line {reader.line_num}: malformed CSV ({err})") from None


def _sniff_delimiter(header_line: str) -> str:
    known = {alias for schema in _SCHEMAS for aliases in schema.columns.values() for alias in aliases}

    def score(delimiter: str) -> int:
        names = next(csv.reader([header_line], delimiter=delimiter), [])
        return sum(column.strip().lower() in known for column in names)

    return max((",", "\t", ";"), key=score)  # ties keep the comma


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names: dict[type, str] = {list: "a list", dict: "an object", str: "a string"}
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _Schema:
    """One accepted set of columns: `marker` identifies it, `columns` maps field -> accepted names."""

    marker: str
    label: str
    columns: dict[str, tuple[str, ...]]
    optional: frozenset[str]

    @staticmethod
    def detect(record: dict, name: str, where: str) -> _Schema:
        keys = {str(key).strip().lower() for key in record}
        for schema in _SCHEMAS:
            if schema.marker in keys:
                return schema
        raise SraVizError(
            f"{name} {where}: no recognised columns: expected instruction/context/response (Dolly style), "
            f"messages (chat turns), prompt/response or text; found {_names(record)}"
        )

    def check_columns(self, header: list[str], name: str) -> None:
        """Refuse a CSV header that lacks a required column, before reading any row."""
        for field, aliases in self.columns.items():
            if field not in self.optional and not set(aliases) & set(header):
                raise SraVizError(
                    f"{name} line 1 (header): missing column {field!r}: expected columns {self.label}, found "
                    f"{', '.join(header) or 'no columns'}"
                )

    def example(self, record: dict, name: str, where: str) -> dict[str, str]:
        record = {str(key).strip().lower(): value for key, value in record.items()}
        values: dict[str, str] = {}
        for field, aliases in self.columns.items():
            key = next((alias for alias in aliases if alias in record), None)
            if key is None or (record[key] is None and field in self.optional):
                if field not in self.optional:
                    raise SraVizError(
                        f"{name} {where}: missing field {field!r}: expected columns {self.label}, found "
                        f"{_names(record)}"
                    )
                values[field] = ""
                continue
            if not isinstance(record[key], str):
                raise SraVizError(
                    f"{name} {where}: field {key!r} is {_json_type(record[key])} ({_short(record[key])}), "
                    "expected a string"
                )
            values[field] = record[key]
        response = values.get("response", values.get("text", "")).strip()
        if not response:
            field = "text" if self.marker == "text" else "response"
            raise SraVizError(f"{name} {where}: empty {field}: every example needs non-blank {field} text")
        if self.marker == "instruction":
            if not values["instruction"].strip():
                raise SraVizError(f"{name} {where}: empty instruction: every example needs an instruction")
            prompt = format_prompt(values["instruction"], values["context"])
        else:
            prompt = values.get("prompt", "").strip()
        return {
            "prompt": prompt,
            "response": response,
            "id": _label(record.get("id"), "id", name, where) or where.replace(" ", "-"),
            "category": _label(record.get("category"), "category", name, where),
        }


@dataclass(frozen=True)
class _ChatSchema(_Schema):
    """The ``messages`` column: a list of ``{role, content}`` turns (module docstring)."""

    def example(self, record: dict, name: str, where: str) -> dict[str, str]:
        record = {str(key).strip().lower(): value for key, value in record.items()}
        turns = _chat_turns(record.get("messages"), f"{name} {where}")
        last = max(
            (i for i, (role, _) in enumerate(turns) if role.strip().lower() == "assistant"), default=-1
        )
        if last < 0:
            roles = ", ".join(role for role, _ in turns)
            raise SraVizError(
                f"{name} {where}: messages hold no assistant turn (roles: {roles}): the last assistant turn "
                "is the response"
            )
        response = turns[last][1].strip()
        if not response:
            raise SraVizError(
                f"{name} {where}: empty response: messages turn {last + 1}, the last assistant turn, is blank"
            )
        return {
            "prompt": format_chat_prompt(turns[:last]),
            "response": response,
            "id": _label(record.get("id"), "id", name, where) or where.replace(" ", "-"),
            "category": _label(record.get("category"), "category", name, where),
        }


def _chat_turns(messages: Any, at: str) -> list[tuple[str, str]]:
    """``(role, content)`` of each turn of a ``messages`` value, or one line saying what is wrong."""
    expected = "expected a list of {role, content} objects"
    if not isinstance(messages, (list, tuple)):
        raise SraVizError(
            f"{at}: field 'messages' is {_json_type(messages)} ({_short(messages)}), {expected}"
        )
    if not messages:
        raise SraVizError(f"{at}: field 'messages' is an empty list, {expected}")
    turns = []
    for number, turn in enumerate(messages, start=1):
        if not isinstance(turn, dict):
            raise SraVizError(
                f"{at}: messages turn {number} is {_json_type(turn)} ({_short(turn)}), expected an object "
                "with role and content"
            )
        for key in ("role", "content"):
            value = turn.get(key)
            if not isinstance(value, str):
                found = "missing" if key not in turn else f"{_json_type(value)} ({_short(value)})"
                raise SraVizError(
                    f"{at}: messages turn {number} {key!r} is {found}, expected a string: each turn is "
                    '{"role": "user", "content": "..."}'
                )
        if not turn["role"].strip():
            raise SraVizError(
                f"{at}: messages turn {number} has a blank role: give user, assistant, system..."
            )
        turns.append((turn["role"], turn["content"]))
    return turns


def _label(value: Any, field: str, name: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SraVizError(
            f"{name} {where}: field {field!r} is {_json_type(value)} ({_short(value)}), expected a string"
        )
    return str(value).strip()


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(record: dict) -> str:
    return ", ".join(str(key) for key in record) or "no columns"


@dataclass(frozen=True)
class FieldMap:
    """User-named columns (``--prompt-field`` / ``--response-field``) instead of a detected schema:
    the response column alone is a plain text (empty prompt).

    Example:
        >>> FieldMap("question", "answer").schema().columns
        {'prompt': ('question',), 'response': ('answer',)}
    """

    prompt: str | None = None
    response: str | None = None

    @property
    def given(self) -> bool:
        return self.prompt is not None or self.response is not None

    def schema(self) -> _Schema:
        if self.response is None:
            raise SraVizError(
                f"--prompt-field {self.prompt!r} was given without --response-field; name the response "
                "column too (or only --response-field for plain texts)"
            )
        response = self.response.strip().lower()
        if self.prompt is None:
            return _Schema("text", f"{response!r} (--response-field)", {"text": (response,)}, frozenset())
        prompt = self.prompt.strip().lower()
        label = f"{prompt!r} and {response!r} (--prompt-field, --response-field)"
        return _Schema("prompt", label, {"prompt": (prompt,), "response": (response,)}, frozenset())


_SCHEMAS = (
    # messages first: chat sets such as UltraChat also carry a prompt column, without a response
    _ChatSchema(
        "messages", "messages (a list of {role, content} turns)", {"messages": ("messages",)}, frozenset()
    ),
    _Schema(
        "instruction",
        "instruction, response and optional context (or Alpaca's input/output)",
        {
            "instruction": ("instruction",),
            "context": ("context", "input"),
            "response": ("response", "output"),
        },
        frozenset({"context"}),
    ),
    _Schema(
        "prompt",
        "prompt and response (or prompt/completion)",
        {"prompt": ("prompt",), "response": ("response", "completion")},
        frozenset(),
    ),
    _Schema("text", "text", {"text": ("text",)}, frozenset()),
)
