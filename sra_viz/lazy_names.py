"""Package names resolved on first use (PEP 562), so importing a package stays cheap.

``sra_viz`` and ``sra_viz.distill`` list their public names with the submodule that defines each; the
submodule (and torch, transformers, ... behind it) is imported when a name is first read, and the value
is then kept on the package so later reads are plain attribute look-ups.

Example:
    >>> __getattr__, __dir__ = lazy_names("sra_viz", {"SraVizError": "errors"}, ["SraVizError"])
    >>> __getattr__("SraVizError").__name__
    'SraVizError'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, exports: dict[str, str], names: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps a name to the
    submodule (relative to ``package``) that defines it; ``__dir__`` lists ``names``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
