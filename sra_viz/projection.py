"""2-D/3-D projections of span CoMs for pictures: PCA, UMAP (plain and aligned over steps), snapshots.

Inputs are matrices with one row per span, as in :mod:`sra_viz.geometry`; outputs are numpy arrays.
umap-learn is imported lazily: its first import compiles numba kernels (see :func:`import_umap`), and
numpy's BLAS runs on one thread here (see :func:`sra_viz.geometry.one_blas_thread`).

Example:
    >>> xy = project_pca(np.random.default_rng(0).normal(size=(20, 8)))
    >>> xy.shape
    (20, 2)
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .errors import SraVizError
from .geometry import NORM_EPS, as_matrix, blas_limit, one_blas_thread

Progress = Callable[[str], None]
_IMPORT_LOCK = threading.Lock()


# ---------------------------------------------------------------- PCA


@dataclass
class PcaProjector:
    """Principal axes of a reference set; ``transform`` maps any later set onto the same axes.

    >>> p = PcaProjector(2).fit(np.random.default_rng(0).normal(size=(50, 6)))
    >>> p.transform(np.zeros((3, 6))).shape
    (3, 2)
    """

    n_components: int = 2
    mean_: np.ndarray | None = None  # (D,)
    components_: np.ndarray | None = None  # (k, D)
    explained_variance_ratio_: np.ndarray | None = None  # (k,)

    @one_blas_thread
    def fit(self, X) -> PcaProjector:
        X = as_matrix(X, "X")
        if not 1 <= self.n_components <= X.shape[1]:
            raise SraVizError(f"n_components={self.n_components} but the data has {X.shape[1]} features")
        self.mean_ = X.mean(0)
        Xc = X - self.mean_  # (N, D)
        if X.shape[0] < X.shape[1]:
            _, s, vt = np.linalg.svd(Xc, full_matrices=False)  # vt (N, D)
        else:  # eigenvectors of the D x D scatter matrix: faster for tall data
            evals, evecs = np.linalg.eigh(Xc.T @ Xc)
            order = np.argsort(evals)[::-1]
            s, vt = np.sqrt(np.clip(evals[order], 0, None)), evecs[:, order].T
        k = self.n_components
        comps = np.zeros((k, X.shape[1]))
        comps[: min(k, len(vt))] = vt[:k]
        # fix each axis' sign (largest loading positive) so equal inputs give equal pictures
        big = np.abs(comps).argmax(1)
        comps *= np.where(comps[np.arange(k), big] < 0, -1.0, 1.0)[:, None]
        self.components_ = comps
        var = s**2
        ratio = np.zeros(k)
        ratio[: min(k, len(var))] = (var / max(var.sum(), NORM_EPS))[:k]
        self.explained_variance_ratio_ = ratio
        return self

    @one_blas_thread
    def transform(self, X) -> np.ndarray:
        if self.components_ is None or self.mean_ is None:
            raise SraVizError("PcaProjector.transform called before fit; call fit(reference) first")
        X = as_matrix(X, "X")
        if X.shape[1] != self.mean_.shape[0]:
            raise SraVizError(f"fitted on {self.mean_.shape[0]} features, got data with {X.shape[1]}")
        return (X - self.mean_) @ self.components_.T  # (N, k)


@one_blas_thread
def project_pca(X, n_components: int = 2, fit_on=None) -> np.ndarray:
    """Project X onto the top principal axes of ``fit_on`` (default: X itself); returns (N, k).

    >>> project_pca(np.eye(4), n_components=2).shape
    (4, 2)
    """
    return PcaProjector(n_components).fit(X if fit_on is None else fit_on).transform(X)


# ---------------------------------------------------------------- UMAP


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


@contextmanager
def _numba_cache_by_default(numba):
    """While umap-learn is imported, make ``numba.njit`` default to ``cache=True``.

    umap-learn and pynndescent leave many kernels uncached, so each new process recompiled them
    (about 15 s of every first fit here). Kernels that say ``cache=False`` keep their choice;
    kernels that cannot be cached (closures built at run time) are compiled as before.
    """
    original = numba.njit

    def njit(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return original(*args, **kwargs)

    numba.njit = njit
    try:
        yield
    finally:
        numba.njit = original


def import_umap(progress: Progress | None = None, cache_all_kernels: bool = True):
    """Import umap-learn with numba's JIT cache in ``sra_viz.paths.numba_cache_dir()`` (or $NUMBA_CACHE_DIR).

    The first import on a machine compiles kernels (about 30 s on 2 cores); later processes load them.
        >>> umap = import_umap()  # doctest: +SKIP
    """
    with _IMPORT_LOCK:  # the njit swap below must not interleave between threads (Streamlit sessions)
        if "umap" in sys.modules:
            return sys.modules["umap"]
        return _import_umap(progress, cache_all_kernels)


def _import_umap(progress: Progress | None, cache_all_kernels: bool):
    from . import paths

    cache_dir = os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.numba_cache_dir()))
    t0 = time.perf_counter()
    _say(progress, f"importing umap-learn (numba cache {cache_dir}; a first import compiles for ~30 s)")
    import numba

    # numba was imported before the variable was set. (ignore: numba.config's settings are made at
    # runtime, unknown to numba's type information.)
    if not numba.config.CACHE_DIR:  # type: ignore[attr-defined]
        numba.config.CACHE_DIR = cache_dir  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cache_all_kernels:
            with _numba_cache_by_default(numba):
                import umap
        else:
            import umap
    _say(progress, f"umap-learn imported in {time.perf_counter() - t0:.1f} s")
    return umap


@contextmanager
def _quiet_numba():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]annot cache.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # a seed makes UMAP single-threaded
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        yield


class UmapProjector:
    """Seeded UMAP fitted once on a reference set, then ``transform`` later snapshots onto the same map.

    ``aligned=True`` uses ``umap.AlignedUMAP`` in :meth:`fit_sequence` (one embedding per snapshot, kept
    close to its neighbours in time). Rows in every call must be float vectors of the same dimension.
    ``n_epochs=200`` by default (umap-learn picks 500 below 10,000 rows: a similar picture, 20-90 %
    slower here); pass ``n_epochs=None`` for umap's own choice. Timings land in ``timings``.
        >>> proj = UmapProjector(n_neighbors=10).fit(reference)  # doctest: +SKIP
        >>> later_xy = proj.transform(snapshot)  # (N, 2)  # doctest: +SKIP
    """

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "cosine",
        random_state: int | None = 0,
        n_epochs: int | None = 200,
        aligned: bool = False,
        progress: Progress | None = None,
        **umap_options,
    ):
        self.n_components, self.n_neighbors, self.min_dist = n_components, n_neighbors, min_dist
        self.metric, self.random_state, self.n_epochs = metric, random_state, n_epochs
        self.aligned, self.progress, self.umap_options = aligned, progress, umap_options
        self.model: Any = None  # the fitted umap.UMAP / umap.AlignedUMAP
        self.embedding_: np.ndarray | None = None  # (N_ref, k) of the reference set
        self.timings: dict[str, float] = {}  # seconds: import, fit, transform (last call)

    def _options(self, n_rows: int) -> dict:
        if n_rows < 3:
            raise SraVizError(f"UMAP needs at least 3 points, got {n_rows}; use project_pca for tiny sets")
        return dict(
            n_components=self.n_components,
            n_neighbors=max(2, min(self.n_neighbors, n_rows - 1)),
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            n_epochs=self.n_epochs,
            **self.umap_options,
        )

    def _umap(self):
        t0 = time.perf_counter()
        umap = import_umap(self.progress)
        self.timings["import"] = time.perf_counter() - t0
        return umap

    def fit(self, X) -> UmapProjector:
        """Fit on a reference set ``X`` (N, D); its layout is kept in ``embedding_``."""
        if self.aligned:
            raise SraVizError("aligned=True fits sequences: call fit_sequence([frame0, frame1, ...])")
        X = as_matrix(X, "X").astype(np.float32)
        umap = self._umap()
        _say(self.progress, f"fitting UMAP on {X.shape[0]} x {X.shape[1]} points")
        t0 = time.perf_counter()
        with _quiet_numba(), blas_limit():
            self.model = umap.UMAP(**self._options(X.shape[0])).fit(X)
        self.embedding_ = np.asarray(self.model.embedding_, dtype=np.float64)
        self.timings["fit"] = time.perf_counter() - t0
        _say(self.progress, f"UMAP fit in {self.timings['fit']:.1f} s")
        return self

    def transform(self, X) -> np.ndarray:
        """Place new rows (N, D) on the fitted map; returns (N, k)."""
        if self.model is None or self.aligned:
            raise SraVizError("transform needs a plain UMAP fitted with fit(reference) (aligned=False)")
        X = as_matrix(X, "X").astype(np.float32)
        t0 = time.perf_counter()
        with _quiet_numba(), blas_limit():
            out = np.asarray(self.model.transform(X), dtype=np.float64)
        self.timings["transform"] = time.perf_counter() - t0
        return out

    def fit_transform(self, X) -> np.ndarray:
        return cast(np.ndarray, self.fit(X).embedding_).copy()  # fit() sets embedding_

    def fit_sequence(self, frames: Sequence) -> list[np.ndarray]:
        """One (N, k) layout per frame; row i is the same item in every frame.

        aligned=True: AlignedUMAP over all frames. Otherwise: fit on frame 0, transform the others.
        """
        mats = [as_matrix(f, f"frames[{i}]").astype(np.float32) for i, f in enumerate(frames)]
        if not mats:
            raise SraVizError("fit_sequence got no frames")
        if len({m.shape for m in mats}) != 1:
            raise SraVizError(f"every frame must have the same shape, got {sorted({m.shape for m in mats})}")
        if not self.aligned:
            first = self.fit_transform(mats[0])
            return [first] + [self.transform(m) for m in mats[1:]]
        umap = self._umap()
        n = mats[0].shape[0]
        relations = [{i: i for i in range(n)} for _ in mats[1:]]
        _say(self.progress, f"fitting AlignedUMAP on {len(mats)} frames of {n} points")
        t0 = time.perf_counter()
        with _quiet_numba(), blas_limit():
            if len(mats) == 1:  # AlignedUMAP needs two frames; one frame is a plain fit
                self.model = umap.UMAP(**self._options(n)).fit(mats[0])
                out = [np.asarray(self.model.embedding_, dtype=np.float64)]
            else:
                self.model = umap.AlignedUMAP(**self._options(n)).fit(mats, relations=relations)
                out = [np.asarray(e, dtype=np.float64) for e in self.model.embeddings_]
        self.timings["fit"] = time.perf_counter() - t0
        self.embedding_ = out[0]
        return out


def warm_up_umap(progress: Progress | None = None, metric: str = "cosine", n_rows: int = 64) -> float:
    """Compile (or load from the numba cache) the kernels one fit + transform needs; returns seconds.

    Call it once at app start or before a benchmark so the first real fit is not paying the JIT.
        >>> warm_up_umap()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(n_rows, 16)).astype(np.float32)
    proj = UmapProjector(n_neighbors=5, metric=metric, n_epochs=5, progress=progress).fit(X[: n_rows // 2])
    proj.transform(X[n_rows // 2 :])
    seconds = time.perf_counter() - t0
    _say(progress, f"UMAP warm-up done in {seconds:.1f} s")
    return seconds


# ---------------------------------------------------------------- snapshots over training


@dataclass
class SnapshotProjection:
    """2-D/3-D layouts of teacher and student span CoMs for every snapshot, on shared axes."""

    steps: list[int]
    teacher: np.ndarray  # (S, N, k): constant over S unless method="aligned_umap"
    student: np.ndarray  # (S, N, k)
    method: str


def project_snapshots(
    teacher,
    students: Sequence,
    steps: Sequence[int] | None = None,
    method: str = "pca",
    fit_on: str = "all",
    n_components: int = 2,
    random_state: int | None = 0,
    progress: Progress | None = None,
    **umap_options,
) -> SnapshotProjection:
    """Project fixed teacher CoMs (N, D) and per-step projected student CoMs [(N, D), ...] on shared axes.

    method: "pca" | "umap" | "aligned_umap". fit_on: "all" (teacher + every snapshot, one layout),
    "teacher+first" (teacher + first snapshot; later ones transformed: good for live runs) or "teacher".
        >>> p = project_snapshots(np.eye(4), [np.eye(4), 2 * np.eye(4)]); p.student.shape
        (2, 4, 2)
    """
    T = as_matrix(teacher, "teacher")
    S = [as_matrix(s, f"students[{i}]") for i, s in enumerate(students)]
    if not S:
        raise SraVizError("project_snapshots got no student snapshots")
    for i, s in enumerate(S):
        if s.shape != T.shape:
            raise SraVizError(
                f"students[{i}] has shape {s.shape}, teacher {T.shape}: project the student first"
            )
    steps = list(range(len(S))) if steps is None else [int(s) for s in steps]
    if len(steps) != len(S):
        raise SraVizError(f"{len(steps)} steps for {len(S)} snapshots")
    n = T.shape[0]
    if method == "aligned_umap":
        proj = UmapProjector(
            n_components, random_state=random_state, aligned=True, progress=progress, **umap_options
        )
        frames = proj.fit_sequence([np.vstack([T, s]) for s in S])  # each (2N, k)
        return SnapshotProjection(
            steps, np.stack([f[:n] for f in frames]), np.stack([f[n:] for f in frames]), method
        )
    refs = {"all": [T, *S], "teacher+first": [T, S[0]], "teacher": [T]}
    if fit_on not in refs:
        raise SraVizError(f"fit_on={fit_on!r}; expected one of {sorted(refs)}")
    if method not in ("pca", "umap"):
        raise SraVizError(f"method={method!r}; expected 'pca', 'umap' or 'aligned_umap'")
    reference = np.vstack(refs[fit_on])  # (R*N, D)
    if method == "pca":
        pca = PcaProjector(n_components).fit(reference)
        t_xy, s_xy = pca.transform(T), np.stack([pca.transform(s) for s in S])
    else:
        proj = UmapProjector(n_components, random_state=random_state, progress=progress, **umap_options)
        ref_xy = proj.fit_transform(reference).reshape(len(refs[fit_on]), n, n_components)
        t_xy = ref_xy[0]
        known = list(ref_xy[1:])  # snapshots that were part of the reference keep their fitted place
        s_xy = np.stack(known + [proj.transform(s) for s in S[len(known) :]])
    return SnapshotProjection(steps, np.repeat(t_xy[None], len(S), axis=0), s_xy, method)
