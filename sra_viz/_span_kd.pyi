"""Types of the compiled module built from ``_span_kd.c`` (optional; see its header comment). The arrays
are C-contiguous buffers: numpy views of CPU tensors."""

from typing import Any

def span_kl(
    x: Any,
    token_row: Any,
    share: Any,
    mask: Any | None,
    z_t: Any,
    diff: Any,
    kl: Any,
    n_vocab: int,
    threads: int,
    /,
) -> None: ...
def row_lse(x: Any, rows: Any, lse: Any, n_vocab: int, threads: int, /) -> None: ...
def spread_rows(
    diff: Any,
    token_row: Any,
    scale: Any,
    grad: Any,
    n_vocab: int,
    threads: int,
    x: Any = None,
    ce_weight: Any = None,
    ce_lse: Any = None,
    /,
) -> None: ...
