"""Read a GGUF file once per load, not three times, and build gguf-py's tensor-name map once.

Loading a ``.gguf`` through transformers parses the whole file once for the config, once for the
tokenizer and once for the weights (``gguf.GGUFReader``: hundreds of thousands of metadata fields, in
Python), and `get_gguf_hf_weights_map` builds a ``gguf.TensorNameMap`` again for every submodule it
visits (794 times for Gemma 3 270M). Inside `gguf_read_once` both are remembered: a reader per file
(keyed by its real path, size and modification time, so a file replaced meanwhile is read again) and
a name map per (architecture, block count). Both are only read by their callers. Measured on the
default student's GGUF: ``load_model`` 24 s -> 10 s of CPU (benchmarks/bench_load.py).

The memo lives on the ``gguf`` module while at least one `gguf_read_once` is open (it nests, and
threads share it) and is dropped with the last one, so no mapped file stays open afterwards.

    with gguf_read_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.RLock()
_open = 0  # gguf_read_once blocks now open, all threads together
_originals: tuple[Any, Any] | None = None  # gguf's own (GGUFReader, get_tensor_name_map) while patched


@contextlib.contextmanager
def gguf_read_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once and each tensor-name map built once."""
    global _open, _originals
    try:
        import gguf
    except ImportError:  # transformers says what is missing when a GGUF is loaded
        yield
        return
    with _LOCK:
        if _open == 0:
            _originals = (gguf.GGUFReader, gguf.get_tensor_name_map)
            _install(gguf, _reader_memo(gguf.GGUFReader), functools.cache(gguf.get_tensor_name_map))
        _open += 1
    try:
        yield
    finally:
        with _LOCK:
            _open -= 1
            if _open == 0 and _originals is not None:
                _install(gguf, *_originals)
                _originals = None


def _install(gguf: Any, reader: Any, name_map: Any) -> None:
    # setattr: mypy would refuse assigning to a class name; transformers imports both from gguf per call
    setattr(gguf, "GGUFReader", reader)  # noqa: B010
    setattr(gguf, "get_tensor_name_map", name_map)  # noqa: B010


def _reader_memo(reader_class: Any) -> Any:
    """``GGUFReader(path, mode)`` that returns the reader made earlier for the same unchanged file."""
    readers: dict[tuple, Any] = {}

    def read(path: str | os.PathLike[str], mode: str = "r") -> Any:
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, mode)
        with _LOCK:
            reader = readers.get(key)
        if reader is None:
            reader = reader_class(path, mode)
            with _LOCK:
                reader = readers.setdefault(key, reader)
        return reader

    return read
