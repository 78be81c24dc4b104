"""Prompt/response examples: the bundled corpus and user files (JSONL, JSON, CSV/TSV, Parquet, folders).

An `Example` is one prompt and its response. Its `text` is ``prompt + RESPONSE_SEPARATOR + response``
(the separator is one newline; an empty prompt gives just the response), and `prompt_end` is the
character index where the response starts in `text`: pass it to `align_spans(..., prompt_end=...)`
so only response tokens are aligned.

User files use one of four schemas, detected from their column names (case-insensitive):

- ``messages``: chat turns ``[{role, content}, ...]``; the last assistant turn is the response, the
  turns before it the prompt, one ``Role: content`` line each then ``Assistant:`` (`format_chat_prompt`);
- ``instruction``, ``response``, optional ``context`` (Dolly style; Alpaca's ``input``/``output`` work too),
  turned into a prompt by `format_prompt`;
- ``prompt``, ``response`` (``completion`` works too);
- ``text``: the whole text is the response and the prompt is empty.

Optional ``id`` and ``category`` columns are kept. Every problem is a `SraVizError` naming the line.
Reading and parsing the files is :mod:`sra_viz.example_files`'s job.

    >>> corpus = load_bundled_corpus()
    >>> train, probe, heldout = split_examples(corpus, n_probe=16, n_heldout=32, seed=0)
    >>> first_batch = next(batches(train, batch_size=8, seed=0, epoch=0))
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import IO

from sra_viz.errors import SraVizError

from .dataset_files import load_dataset_rows, reads_through_datasets
from .example_files import (
    FieldMap,
    decode,
    format_chat_prompt,
    format_prompt,
    parse_records,
    read_source,
    resolve_format,
)

RESPONSE_SEPARATOR = "\n"  # between prompt and response in Example.text
MAX_BYTES = 20_000_000  # default size cap of load_examples (20 MB)

Source = str | os.PathLike | bytes | bytearray | IO[bytes] | IO[str]

_CORPUS_FILE = "corpus.jsonl"


@dataclass(frozen=True)
class Example:
    """One prompt and its response; `text` joins them, `prompt_end` is where the response starts.

    Example:
        >>> ex = Example("Instruction: Name a prime.\\nResponse:", "7 is prime.")
        >>> ex.text[ex.prompt_end:]
        '7 is prime.'
    """

    prompt: str
    response: str
    id: str = ""
    category: str = ""

    def __post_init__(self) -> None:
        for field in ("prompt", "response", "id", "category"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise SraVizError(f"Example.{field} must be a string, got {type(value).__name__}: {value!r}")

    @property
    def text(self) -> str:
        """The full text a model reads: prompt, separator, response (just the response if no prompt)."""
        return f"{self.prompt}{RESPONSE_SEPARATOR}{self.response}" if self.prompt else self.response

    @property
    def prompt_end(self) -> int:
        """Character index in `text` where the response starts (0 when the prompt is empty)."""
        return len(self.prompt) + len(RESPONSE_SEPARATOR) if self.prompt else 0


def load_bundled_corpus() -> list[Example]:
    """The 300+ prompt/response pairs shipped with sra_viz (``sra_viz/corpus/corpus.jsonl``, Apache-2.0).

    Example:
        >>> corpus = load_bundled_corpus()
        >>> len(corpus) >= 300 and all(ex.category for ex in corpus)
        True
    """
    return list(_bundled_corpus())


@functools.lru_cache(maxsize=1)
def _bundled_corpus() -> tuple[Example, ...]:
    raw = (resources.files("sra_viz") / "corpus" / _CORPUS_FILE).read_bytes()
    return tuple(_parse(decode(raw, _CORPUS_FILE), _CORPUS_FILE, "jsonl"))


def load_examples(
    path_or_buffer: Source,
    fmt: str | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    prompt_field: str | None = None,
    response_field: str | None = None,
) -> list[Example]:
    """Load examples from a JSONL, JSON or CSV/TSV file: a path, str content, bytes or a file-like object;
    or from a Parquet file or a folder of data files (read with 🤗 datasets, :mod:`sra_viz.dataset_files`).

    The format comes from `fmt`, else the file name's extension, else the content (``{`` JSONL,
    ``[`` JSON array, otherwise CSV). Files over `max_bytes` are refused. `prompt_field` /
    `response_field` name the columns to read instead of the detected schema (the response column
    alone: plain texts).

    Example:
        >>> load_examples('{"prompt": "2+2?", "response": "4"}\\n')[0].text
        '2+2?\\n4'
    """
    fields = FieldMap(prompt_field, response_field)
    if fmt is None and reads_through_datasets(path_or_buffer):
        rows = load_dataset_rows(os.fspath(path_or_buffer), fields, max_bytes)  # type: ignore[arg-type]
        return [Example(**row) for row in rows]
    raw, name = read_source(path_or_buffer, max_bytes)
    text = raw if isinstance(raw, str) else decode(raw, name)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SraVizError(f"{name} is empty: give a JSONL or CSV file with at least one example")
    return _parse(text, name, resolve_format(fmt, name, text), fields)


def split_examples(
    examples: Sequence[Example], n_probe: int, n_heldout: int, seed: int = 0
) -> tuple[list[Example], list[Example], list[Example]]:
    """Deterministic, disjoint (train, probe, heldout) split; each part keeps the input order.

    Held-out examples are drawn first, so changing `n_probe` leaves the held-out set unchanged.

    Example:
        >>> train, probe, heldout = split_examples(load_bundled_corpus(), 16, 32, seed=0)
        >>> len(probe), len(heldout)
        (16, 32)
    """
    n = len(examples)
    if n_probe < 0 or n_heldout < 0:
        raise SraVizError(f"n_probe and n_heldout must be >= 0, got n_probe={n_probe}, n_heldout={n_heldout}")
    if n_probe + n_heldout >= n:
        raise SraVizError(
            f"asked for {n_probe} probe + {n_heldout} held-out examples but only {n} examples were given: "
            "leave at least one for training"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    heldout = sorted(order[:n_heldout])
    probe = sorted(order[n_heldout : n_heldout + n_probe])
    train = sorted(order[n_heldout + n_probe :])
    return ([examples[i] for i in train], [examples[i] for i in probe], [examples[i] for i in heldout])


def batches(
    examples: Sequence[Example], batch_size: int, seed: int = 0, epoch: int = 0, *, drop_last: bool = False
) -> Iterator[list[Example]]:
    """Yield one epoch of shuffled batches; the order depends only on (seed, epoch).

    The last batch may be smaller unless `drop_last`. Every example appears once per epoch.

    Example:
        >>> [len(b) for b in batches(load_bundled_corpus()[:10], batch_size=4, seed=1, epoch=0)]
        [4, 4, 2]
    """
    if batch_size < 1:
        raise SraVizError(f"batch_size must be >= 1, got {batch_size}")
    if not examples:
        raise SraVizError("no examples to batch: load a corpus with at least one example")
    order = list(range(len(examples)))
    random.Random(f"sra_viz:{seed}:{epoch}").shuffle(order)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return ([examples[i] for i in order[start : start + batch_size]] for start in range(0, stop, batch_size))


def to_frame(examples: Sequence[Example]):
    """A pandas DataFrame with one row per example (id, category, prompt, response, lengths).

    Example:
        >>> to_frame(load_bundled_corpus()[:3]).columns[:4].tolist()
        ['id', 'category', 'prompt', 'response']
    """
    import pandas as pd

    rows = [
        {
            "id": ex.id,
            "category": ex.category,
            "prompt": ex.prompt,
            "response": ex.response,
            "prompt_chars": len(ex.prompt),
            "response_chars": len(ex.response),
        }
        for ex in examples
    ]
    return pd.DataFrame(
        rows, columns=["id", "category", "prompt", "response", "prompt_chars", "response_chars"]
    )


def _parse(text: str, name: str, fmt: str, fields: FieldMap | None = None) -> list[Example]:
    return [Example(**row) for row in parse_records(text, name, fmt, fields)]


__all__ = [
    "MAX_BYTES",
    "RESPONSE_SEPARATOR",
    "Example",
    "batches",
    "format_chat_prompt",
    "format_prompt",
    "load_bundled_corpus",
    "load_examples",
    "split_examples",
    "to_frame",
]
