"""Geometry of span centers of mass: the metrics shared with the distillation engine and the app.

Metrics take two matrices of span CoMs, one row per span (teacher ``(N, D_T)``, student ``(N, D_S)`` or the
student projected to teacher space ``(N, D_T)``), as numpy arrays, torch tensors or nested lists, and
return a Python float. Nothing here imports torch. The 2-D/3-D pictures of the same matrices (PCA, UMAP)
are in :mod:`sra_viz.projection`.

Example:
    >>> X = np.random.default_rng(0).normal(size=(20, 8))
    >>> round(linear_cka(X, X), 6), round(gram_distance(X, X), 6)
    (1.0, 0.0)
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np

from .errors import SraVizError

NORM_EPS = 1e-12  # floor of every norm or sum divided by (zero rows stay zero)


# ---------------------------------------------------------------- BLAS threads


@contextmanager
def blas_limit():
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


def one_blas_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with blas_limit():
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- input checks


def as_matrix(x, name: str) -> np.ndarray:
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
    X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
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


@one_blas_thread
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


@one_blas_thread
def cosine_gram(X) -> np.ndarray:
    """Cosine-similarity Gram matrix ``G_kk' = ⟨x̂_k, x̂_k'⟩`` with ``x̂ = x/‖x‖`` (zero rows give 0).

    >>> cosine_gram([[1.0, 0], [1, 1]]).round(3).tolist()
    [[1.0, 0.707], [0.707, 1.0]]
    """
    U = _unit_rows(as_matrix(X, "X"))
    return U @ U.T  # (N, N)


@one_blas_thread
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


@one_blas_thread
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


@one_blas_thread
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


@one_blas_thread
def fit_linear_map(student, teacher, ridge: float = 1e-2) -> np.ndarray:
    """Least-squares map W (D_S, D_T) with ``student @ W ≈ teacher`` (ridge-regularised), for raw pairs.

    ``W = (SᵀS + λ·tr(SᵀS)/D_S·I)⁻¹ SᵀT``. An analysis stand-in for SRA's trained projector, fitted on
    the same spans it is shown on, so it flatters the student: say so wherever it is drawn.
        >>> S = np.random.default_rng(0).normal(size=(50, 4))
        >>> np.allclose(S @ fit_linear_map(S, 2 * S, 1e-9), 2 * S)
        True
    """
    S, T = as_matrix(student, "student"), as_matrix(teacher, "teacher")
    if S.shape[0] != T.shape[0]:
        raise SraVizError(
            f"student has {S.shape[0]} rows and teacher {T.shape[0]}; rows must be the same spans"
        )
    gram = S.T @ S  # (D_S, D_S)
    scale = ridge * max(np.trace(gram) / max(S.shape[1], 1), NORM_EPS)
    return np.linalg.solve(gram + scale * np.eye(S.shape[1]), S.T @ T)  # (D_S, D_T)


RIDGE_FLOOR = 1e-12  # added to the ridge strength, so an all-zero matrix stays solvable


@one_blas_thread
def ridge_crossfit(X, Y, groups, ridge: float = 0.1) -> np.ndarray:
    """Out-of-fold ridge predictions of Y (N, D_Y) from X (N, D_X), folds = group parity (no bias).

    ``W = (XᵀX + λI)⁻¹XᵀY`` with ``λ = ridge · tr(XᵀX)/D_X``, fitted on the rows of the other fold
    (groups are texts: no span is predicted by a map that saw its text); with one group it is in-sample.
        >>> X = np.random.default_rng(0).normal(size=(40, 3)); Y = X @ np.ones((3, 2))
        >>> bool(np.allclose(ridge_crossfit(X, Y, np.arange(40) % 4, ridge=1e-9), Y, atol=1e-4))
        True
    """
    X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
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


@one_blas_thread
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
