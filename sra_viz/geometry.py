"""Geometry of span centers of mass: metrics shared with the distillation engine, and 2-D/3-D projections.

Metrics take two matrices of span CoMs, one row per span (teacher ``(N, D_T)``, student ``(N, D_S)`` or the
student projected to teacher space ``(N, D_T)``), as numpy arrays, torch tensors or nested lists, and
return a Python float. Projections return numpy arrays. Nothing here imports torch; umap-learn is
imported lazily (its first import compiles numba kernels, see :func:`import_umap`).

Example:
    >>> X = np.random.default_rng(0).normal(size=(20, 8))
    >>> round(linear_cka(X, X), 6), round(gram_distance(X, X), 6)
    (1.0, 0.0)
"""

from __future__ import annotations

import functools
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

Progress = Callable[[str], None]
NORM_EPS = 1e-12  # floor of every norm or sum divided by (zero rows stay zero)
_IMPORT_LOCK = threading.Lock()


# ---------------------------------------------------------------- BLAS threads


@contextmanager
def _blas_limit():
    """Run numpy's BLAS on one thread (when threadpoolctl, a scikit-learn dependency, is present).

    These are small matrices: one thread does 2,000 x 640 PCA in ~0.2 s, while multithreaded BLAS on a
    shared, oversubscribed 2-core machine took 1-13 s, and it also competes with torch's own threads.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - only without scikit-learn
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _one_blas_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_limit():
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- input checks


def _matrix(x, name: str) -> np.ndarray:
    """Any (N, D) array-like (torch tensors included, gradients dropped) as float64 numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise SraVizError(f"{name} must be a 2-D matrix (rows = spans), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise SraVizError(f"{name} contains NaN or infinite values; check the CoMs fed in")
    return arr


def _pair(X, Y, *, same_dim: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _matrix(X, "X"), _matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise SraVizError(
            f"{what}: X has {X.shape[0]} rows but Y has {Y.shape[0]}; rows must be the same spans"
        )
    if same_dim and X.shape[1] != Y.shape[1]:
        raise SraVizError(
            f"{what}: X is {X.shape} and Y is {Y.shape}; it compares rows directly, so project the student "
            "to teacher space first (same feature dimension)"
        )
    return X, Y


def _weights(weights, n: int) -> np.ndarray:
    """Span weights as a float64 vector of length n, non-negative with a positive sum."""
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise SraVizError(
            f"weights must be {n} non-negative numbers with a positive sum, got shape {w.shape}"
        )
    return w


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), NORM_EPS)  # (N, D), zero rows stay zero


# ---------------------------------------------------------------- metrics


@_one_blas_thread
def linear_cka(X, Y) -> float:
    """Linear CKA between two representations of the same N spans; feature dims may differ.

    With column-centered X, Y: ``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F · ‖YᵀY‖_F)`` in [0, 1]; invariant to
    orthogonal transforms and isotropic scaling of either side. NaN when a side has no variance.
        >>> X = np.array([[1.0, 0], [0, 1], [1, 1]]); round(linear_cka(X, 3 * X[:, ::-1]), 6)
        1.0
    """
    X, Y = _pair(X, Y, same_dim=False, what="linear_cka")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    if X.shape[0] < max(X.shape[1], Y.shape[1]):  # N x N Grams are cheaper: <K, L>_F = ‖YᵀX‖²_F
        K, L = X @ X.T, Y @ Y.T  # (N, N)
        hsic, norm_x, norm_y = (K * L).sum(), np.linalg.norm(K), np.linalg.norm(L)
    else:
        hsic = np.linalg.norm(Y.T @ X) ** 2  # (D_Y, D_X)
        norm_x, norm_y = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if norm_x < NORM_EPS or norm_y < NORM_EPS:
        return float("nan")
    return float(hsic / (norm_x * norm_y))


@_one_blas_thread
def cosine_gram(X) -> np.ndarray:
    """Cosine-similarity Gram matrix ``G_kk' = ⟨x̂_k, x̂_k'⟩`` with ``x̂ = x/‖x‖`` (zero rows give 0).

    >>> cosine_gram([[1.0, 0], [1, 1]]).round(3).tolist()
    [[1.0, 0.707], [0.707, 1.0]]
    """
    U = _unit_rows(_matrix(X, "X"))
    return U @ U.T  # (N, N)


@_one_blas_thread
def gram_distance(X, Y, weights=None) -> float:
    """Weighted mean squared difference of the off-diagonal cosine Grams: what L_geo measures.

    ``Σ_{k≠k'} π_kk' (G^X_kk' − G^Y_kk')²`` with ``π_kk' = w_k w_k' / Σ_{a≠b} w_a w_b`` (uniform w: plain
    mean over the N(N−1) pairs). 0 for identical or rotated sets; dims may differ; NaN when N < 2.
        >>> gram_distance([[1.0, 0], [0, 1]], [[1.0, 0], [1, 0]])
        1.0
    """
    X, Y = _pair(X, Y, same_dim=False, what="gram_distance")
    n = X.shape[0]
    if n < 2:
        return float("nan")
    w = np.ones(n) if weights is None else _weights(weights, n)
    pair_w = np.outer(w, w)  # (N, N)
    np.fill_diagonal(pair_w, 0.0)
    total = pair_w.sum()
    if total <= 0:
        return float("nan")
    diff = cosine_gram(X) - cosine_gram(Y)  # (N, N)
    return float((pair_w * diff**2).sum() / total)


@_one_blas_thread
def mean_matched_cosine(A, B, weights=None) -> float:
    """Mean cosine between matched rows, ``(1/N) Σ_k cos(a_k, b_k)`` (or weighted by ``weights``).

    Rows must live in the same space (student CoMs projected to teacher space).
        >>> mean_matched_cosine([[1.0, 0], [0, 1]], [[2.0, 0], [1, 0]])
        0.5
    """
    A, B = _pair(A, B, same_dim=True, what="mean_matched_cosine")
    cos = (_unit_rows(A) * _unit_rows(B)).sum(1)  # (N,)
    if weights is None:
        return float(cos.mean()) if len(cos) else float("nan")
    w = _weights(weights, len(cos))
    return float((w * cos).sum() / w.sum())


@_one_blas_thread
def retrieval_accuracy(A, B, top_k: int = 1) -> float:
    """Fraction of rows i of A whose ``top_k`` nearest rows of B by cosine include row i.

    Ties go to the lower index. Rows must live in the same space.
        >>> retrieval_accuracy([[1.0, 0], [0, 1]], [[1.0, 0], [1, 0]])
        0.5
    """
    A, B = _pair(A, B, same_dim=True, what="retrieval_accuracy")
    n = A.shape[0]
    if n == 0:
        return float("nan")
    sim = _unit_rows(A) @ _unit_rows(B).T  # (N, N)
    own = sim[np.arange(n), np.arange(n)]  # (N,)
    # rank of the own match: rows of B strictly better, plus ties at a lower index
    better = (sim > own[:, None]).sum(1) + np.tril(sim == own[:, None], k=-1).sum(1)
    return float((better < top_k).mean())


@_one_blas_thread
def fit_linear_map(student, teacher, ridge: float = 1e-2) -> np.ndarray:
    """Least-squares map W (D_S, D_T) with ``student @ W ≈ teacher`` (ridge-regularised), for raw pairs.

    ``W = (SᵀS + λ·tr(SᵀS)/D_S·I)⁻¹ SᵀT``. An analysis stand-in for SRA's trained projector, fitted on
    the same spans it is shown on, so it flatters the student: say so wherever it is drawn.
        >>> S = np.random.default_rng(0).normal(size=(50, 4))
        >>> np.allclose(S @ fit_linear_map(S, 2 * S, 1e-9), 2 * S)
        True
    """
    S, T = _matrix(student, "student"), _matrix(teacher, "teacher")
    if S.shape[0] != T.shape[0]:
        raise SraVizError(
            f"student has {S.shape[0]} rows and teacher {T.shape[0]}; rows must be the same spans"
        )
    gram = S.T @ S  # (D_S, D_S)
    scale = ridge * max(np.trace(gram) / max(S.shape[1], 1), NORM_EPS)
    return np.linalg.solve(gram + scale * np.eye(S.shape[1]), S.T @ T)  # (D_S, D_T)


RIDGE_FLOOR = 1e-12  # added to the ridge strength, so an all-zero matrix stays solvable


@_one_blas_thread
def ridge_crossfit(X, Y, groups, ridge: float = 0.1) -> np.ndarray:
    """Out-of-fold ridge predictions of Y (N, D_Y) from X (N, D_X), folds = group parity (no bias).

    ``W = (XᵀX + λI)⁻¹XᵀY`` with ``λ = ridge · tr(XᵀX)/D_X``, fitted on the rows of the other fold
    (groups are texts: no span is predicted by a map that saw its text); with one group it is in-sample.
        >>> X = np.random.default_rng(0).normal(size=(40, 3)); Y = X @ np.ones((3, 2))
        >>> bool(np.allclose(ridge_crossfit(X, Y, np.arange(40) % 4, ridge=1e-9), Y, atol=1e-4))
        True
    """
    X, Y = _matrix(X, "X"), _matrix(Y, "Y")
    fold = np.asarray(groups) % 2  # (N,)
    out = np.zeros_like(Y)
    for f in (0, 1):
        test = fold == f
        train = ~test if (~test).any() else test
        if not test.any():
            continue
        Xt = X[train]
        gram = Xt.T @ Xt  # (D_X, D_X)
        lam = ridge * np.trace(gram) / max(X.shape[1], 1) + RIDGE_FLOOR
        W = np.linalg.solve(gram + lam * np.eye(X.shape[1]), Xt.T @ Y[train])  # (D_X, D_Y)
        out[test] = X[test] @ W
    return out


def gram_distance_by_text(S, T, text_id, weights=None) -> float:
    """Mean over texts of :func:`gram_distance` between the spans of one text (NaN if no text has 2)."""
    S, T = _pair(S, T, same_dim=False, what="gram_distance_by_text")
    text_id = np.asarray(text_id)
    values = []
    for t in np.unique(text_id):
        rows = text_id == t
        w = None if weights is None else np.asarray(weights)[rows]
        if rows.sum() >= 2 and (w is None or np.count_nonzero(w) >= 2):
            values.append(gram_distance(S[rows], T[rows], weights=w))
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def retrieval_by_text(projected, T, text_id) -> float:
    """Top-1 retrieval among the spans of the same text, after removing each side's mean.

    Within a text every span is a distinct position (pooled over texts, the many "." spans of other
    texts would count as misses), and the mean direction that all CoMs share would otherwise make one
    teacher span the nearest neighbour of almost every projected student span.
    """
    P, Q = _pair(projected, T, same_dim=True, what="retrieval_by_text")
    P, Q = P - P.mean(0), Q - Q.mean(0)
    text_id = np.asarray(text_id)
    scores = [retrieval_accuracy(P[text_id == t], Q[text_id == t]) for t in np.unique(text_id)]
    return float(np.mean(scores)) if scores else float("nan")


def crossfit_scores(student, teacher, text_id, ridge: float = 0.1, weights=None):
    """How close student span CoMs (N, D_S) are to the teacher's (N, D_T), out of sample.

    The measurement of the distillation probe and the Geometry page. Projector-free: ``cka``
    (:func:`linear_cka` over all spans), ``gram_distance`` (mean over texts of the cosine-Gram distance,
    the unweighted L_geo) and, with ``weights`` (the teacher's ŵ), ``gram_distance_weighted``. Through
    the 2-fold cross-fitted ridge map (:func:`ridge_crossfit`, folds by text): ``cos`` (mean matched
    cosine) and ``retrieval`` (:func:`retrieval_by_text`). Returns (scores, projected student (N, D_T)).
        >>> rng = np.random.default_rng(0); S = rng.normal(size=(40, 60)); T = rng.normal(size=(40, 8))
        >>> scores, _ = crossfit_scores(S, T, np.arange(40) // 5)
        >>> scores["cos"] < 0.5  # unrelated sides; an in-sample fit (60 dims, 40 spans) would give 1.0
        True
    """
    S, T = _pair(student, teacher, same_dim=False, what="crossfit_scores")
    projected = ridge_crossfit(S, T, text_id, ridge)  # (N, D_T)
    scores = {
        "cka": linear_cka(S, T),
        "gram_distance": gram_distance_by_text(S, T, text_id),
    }
    if weights is not None:
        scores["gram_distance_weighted"] = gram_distance_by_text(S, T, text_id, weights)
    scores["cos"] = mean_matched_cosine(projected, T)
    scores["retrieval"] = retrieval_by_text(projected, T, text_id)
    return scores, projected


@_one_blas_thread
def procrustes_align(student, teacher) -> tuple[np.ndarray, np.ndarray]:
    """Put raw student and teacher CoMs in one space by a rigid fit: (student', teacher') both (N, k).

    Each side is centered, scaled to unit Frobenius norm and reduced to its top k = min(N, D_S, D_T)
    principal axes; the student is then rotated (orthogonal Procrustes, ``R = UVᵀ`` from
    ``svd(SᵀT)``). A rotation keeps every distance, so what still differs is a real difference of shape.
        >>> T = np.random.default_rng(0).normal(size=(6, 3))
        >>> s, t = procrustes_align(T @ np.eye(3)[::-1] * 4, T)
        >>> bool(np.allclose(s, t))
        True
    """
    S, T = _pair(student, teacher, same_dim=False, what="procrustes_align")
    k = min(S.shape[0], S.shape[1], T.shape[1])
    sides = []
    for M in (S, T):
        M = M - M.mean(0)
        M = M / max(np.linalg.norm(M), NORM_EPS)
        u, sv, _ = np.linalg.svd(M, full_matrices=False)
        sides.append(u[:, :k] * sv[:k])  # (N, k) principal coordinates
    s_k, t_k = sides
    u, _, vt = np.linalg.svd(s_k.T @ t_k)  # (k, k)
    return s_k @ (u @ vt), t_k


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

    @_one_blas_thread
    def fit(self, X) -> PcaProjector:
        X = _matrix(X, "X")
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

    @_one_blas_thread
    def transform(self, X) -> np.ndarray:
        if self.components_ is None or self.mean_ is None:
            raise SraVizError("PcaProjector.transform called before fit; call fit(reference) first")
        X = _matrix(X, "X")
        if X.shape[1] != self.mean_.shape[0]:
            raise SraVizError(f"fitted on {self.mean_.shape[0]} features, got data with {X.shape[1]}")
        return (X - self.mean_) @ self.components_.T  # (N, k)


@_one_blas_thread
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
        X = _matrix(X, "X").astype(np.float32)
        umap = self._umap()
        _say(self.progress, f"fitting UMAP on {X.shape[0]} x {X.shape[1]} points")
        t0 = time.perf_counter()
        with _quiet_numba(), _blas_limit():
            self.model = umap.UMAP(**self._options(X.shape[0])).fit(X)
        self.embedding_ = np.asarray(self.model.embedding_, dtype=np.float64)
        self.timings["fit"] = time.perf_counter() - t0
        _say(self.progress, f"UMAP fit in {self.timings['fit']:.1f} s")
        return self

    def transform(self, X) -> np.ndarray:
        """Place new rows (N, D) on the fitted map; returns (N, k)."""
        if self.model is None or self.aligned:
            raise SraVizError("transform needs a plain UMAP fitted with fit(reference) (aligned=False)")
        X = _matrix(X, "X").astype(np.float32)
        t0 = time.perf_counter()
        with _quiet_numba(), _blas_limit():
            out = np.asarray(self.model.transform(X), dtype=np.float64)
        self.timings["transform"] = time.perf_counter() - t0
        return out

    def fit_transform(self, X) -> np.ndarray:
        return cast(np.ndarray, self.fit(X).embedding_).copy()  # fit() sets embedding_

    def fit_sequence(self, frames: Sequence) -> list[np.ndarray]:
        """One (N, k) layout per frame; row i is the same item in every frame.

        aligned=True: AlignedUMAP over all frames. Otherwise: fit on frame 0, transform the others.
        """
        mats = [_matrix(f, f"frames[{i}]").astype(np.float32) for i, f in enumerate(frames)]
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
        with _quiet_numba(), _blas_limit():
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
    T = _matrix(teacher, "teacher")
    S = [_matrix(s, f"students[{i}]") for i, s in enumerate(students)]
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
