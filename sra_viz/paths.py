"""Where sra_viz keeps what it downloads, converts and writes.

Everything lives under one home folder: ``$SRA_VIZ_HOME`` or ``~/.cache/sra_viz``; the teacher cache may
live elsewhere (``$SRA_VIZ_TEACHER_CACHE``: the test suite points it at a temporary folder), and so may
trackio's local records (``$TRACKIO_DIR``, trackio's own variable).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The sra_viz cache folder (created on first use).

    Example:
        >>> home().name in {"sra_viz"} or "SRA_VIZ_HOME" in os.environ
        True
    """
    root = os.environ.get("SRA_VIZ_HOME")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "sra_viz"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Converted transformers folders of the default models."""
    return _sub("models")


def gguf_dir() -> Path:
    """The original GGUF files of the default models."""
    return _sub("gguf")


def tokenizers_dir() -> Path:
    """Extra tokenizers without weights (GPT-2) used by tests and benchmarks."""
    return _sub("tokenizers")


def runs_dir() -> Path:
    """Default parent folder of distillation run directories."""
    return _sub("runs")


def _env_or_sub(variable: str, name: str) -> Path:
    """The folder named by the environment ``variable`` (created), else ``<home>/<name>``."""
    root = os.environ.get(variable)
    if not root:
        return _sub(name)
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def teacher_cache_dir() -> Path:
    """The teacher cache (sra_viz.distill.teacher_cache): ``$SRA_VIZ_TEACHER_CACHE``, else
    ``<home>/teacher_cache``."""
    return _env_or_sub("SRA_VIZ_TEACHER_CACHE", "teacher_cache")


def trackio_dir() -> Path:
    """trackio's local records of ``--report-to trackio`` runs (one SQLite file per project):
    ``$TRACKIO_DIR``, else ``<home>/trackio``."""
    return _env_or_sub("TRACKIO_DIR", "trackio")


def numba_cache_dir() -> Path:
    """Persistent numba JIT cache, so umap-learn compiles once per machine."""
    return _sub("numba")


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
