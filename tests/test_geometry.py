"""Geometry metrics against hand-computed values and invariances; PCA/UMAP reproducibility.

Run: ``.venv/bin/python -m pytest tests/test_geometry.py -q`` (``-m "not slow"`` skips UMAP and models).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sra_viz import geometry, projection
from sra_viz.errors import SraVizError


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))  # (d, d)


@pytest.fixture
def X():
    return np.random.default_rng(1).normal(size=(30, 12))  # (N, D)


# ---------------------------------------------------------------- CKA


def test_cka_of_a_matrix_with_itself_is_one(X):
    assert geometry.linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)


def test_cka_hand_computed_one_feature():
    # centered x = (-1, 0, 1), y = (-5/3, -2/3, 7/3): CKA = (x.y)^2 / (|x|^2 |y|^2) = 16 / (2 * 78/9) = 12/13
    assert geometry.linear_cka([[0.0], [1], [2]], [[0.0], [1], [4]]) == pytest.approx(12 / 13)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(X):
    Y = np.random.default_rng(2).normal(size=(30, 7))
    base = geometry.linear_cka(X, Y)
    assert 0.0 < base < 1.0
    assert geometry.linear_cka(3.5 * X @ _orthogonal(12, 3), Y) == pytest.approx(base, rel=1e-10)
    assert geometry.linear_cka(X, 0.1 * Y @ _orthogonal(7, 4)) == pytest.approx(base, rel=1e-10)
    assert geometry.linear_cka(X + 5.0, Y) == pytest.approx(base, rel=1e-10)  # centered


def test_cka_not_invariant_to_anisotropic_scaling(X):
    assert geometry.linear_cka(X * np.linspace(0.1, 10, 12), X) < 0.99


def test_cka_gram_and_feature_paths_agree():
    rng = np.random.default_rng(5)
    wide, tall = rng.normal(size=(8, 40)), rng.normal(size=(8, 3))  # N < D uses N x N Grams
    feature_path = np.linalg.norm((tall - tall.mean(0)).T @ (wide - wide.mean(0))) ** 2
    norms = np.linalg.norm(np.cov(wide.T, bias=True)) * np.linalg.norm(np.cov(tall.T, bias=True)) * 64
    assert geometry.linear_cka(wide, tall) == pytest.approx(feature_path / norms, rel=1e-9)


def test_cka_accepts_torch_and_rejects_mismatched_rows(X):
    torch = pytest.importorskip("torch")
    t = torch.tensor(X, requires_grad=True)
    assert geometry.linear_cka(t, t * 2) == pytest.approx(1.0)
    with pytest.raises(SraVizError, match="30 rows but Y has 29"):
        geometry.linear_cka(X, X[:-1])


def test_cka_of_constant_side_is_nan():
    assert math.isnan(geometry.linear_cka(np.ones((4, 3)), np.eye(4)[:, :3]))


# ---------------------------------------------------------------- Gram distance


def test_gram_distance_identical_and_rotated_sets_are_zero(X):
    assert geometry.gram_distance(X, X) == pytest.approx(0.0, abs=1e-15)
    assert geometry.gram_distance(X, X @ _orthogonal(12, 7)) == pytest.approx(0.0, abs=1e-12)
    # per-row scaling does not change cosines either; other dims are fine
    rotated_padded = np.hstack([X @ _orthogonal(12, 8), np.zeros((30, 5))]) * np.arange(1, 31)[:, None]
    assert geometry.gram_distance(X, rotated_padded) == pytest.approx(0.0, abs=1e-12)


def test_gram_distance_hand_computed():
    X = [[1.0, 0], [0, 1], [1, 1]]  # off-diagonal cosines: (0,1)=0, (0,2)=(1,2)=1/sqrt2
    Y = [[1.0, 0], [1, 0], [1, 0]]  # all 1
    d01, d02 = 1.0, (1 - 1 / math.sqrt(2)) ** 2
    assert geometry.gram_distance(X, Y) == pytest.approx((d01 + 2 * d02) / 3)
    assert geometry.gram_distance(X, Y, weights=[1, 1, 0]) == pytest.approx(d01)
    # pair weights pi_kk' ∝ w_k w_k' as in L_geo: w = (2, 1, 1) -> pairs (0,1):2, (0,2):2, (1,2):1
    assert geometry.gram_distance(X, Y, weights=[2, 1, 1]) == pytest.approx((2 * d01 + 2 * d02 + d02) / 5)


def test_gram_distance_rejects_bad_weights(X):
    with pytest.raises(SraVizError, match="non-negative"):
        geometry.gram_distance(X, X, weights=-np.ones(30))
    with pytest.raises(SraVizError, match="30 non-negative"):
        geometry.gram_distance(X, X, weights=np.ones(3))


def test_cosine_gram_is_unit_diagonal_and_symmetric(X):
    G = geometry.cosine_gram(X)
    assert G.shape == (30, 30)
    np.testing.assert_allclose(np.diag(G), 1.0)
    np.testing.assert_allclose(G, G.T)


# ---------------------------------------------------------------- matched cosine, retrieval


def test_mean_matched_cosine_identical_is_one_and_hand_value(X):
    assert geometry.mean_matched_cosine(X, X) == pytest.approx(1.0)
    assert geometry.mean_matched_cosine(X, -X) == pytest.approx(-1.0)
    A, B = [[1.0, 0], [0, 1], [1, 1]], [[3.0, 0], [1, 0], [1, 0]]  # cosines 1, 0, 1/sqrt2
    assert geometry.mean_matched_cosine(A, B) == pytest.approx((1 + 0 + 1 / math.sqrt(2)) / 3)
    assert geometry.mean_matched_cosine(A, B, weights=[0, 1, 1]) == pytest.approx(1 / (2 * math.sqrt(2)))


def test_mean_matched_cosine_needs_same_dim(X):
    with pytest.raises(SraVizError, match="project the student"):
        geometry.mean_matched_cosine(X, X[:, :5])


def test_retrieval_identical_is_one_and_permuted_is_zero(X):
    assert geometry.retrieval_accuracy(X, X) == 1.0
    derangement = np.roll(np.arange(30), 1)
    assert geometry.retrieval_accuracy(X, X[derangement]) == 0.0
    assert geometry.retrieval_accuracy(X, X[derangement], top_k=30) == 1.0


def test_retrieval_hand_value_and_ties():
    A = [[1.0, 0], [0, 1], [1, 1]]
    B = [[1.0, 0.1], [0.1, 1], [1, -1]]  # row 2 (1,1) is orthogonal to its own B2, nearer B0 -> miss
    assert geometry.retrieval_accuracy(A, B) == pytest.approx(2 / 3)
    assert geometry.retrieval_accuracy([[1.0, 0], [1, 0]], [[1.0, 0], [1, 0]]) == 0.5  # tie -> lower index


# ---------------------------------------------------------------- projections


def test_pca_matches_sklearn_up_to_sign_and_is_deterministic():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    for shape in ((200, 12), (10, 50)):  # eigh path (tall) and SVD path (wide)
        X = rng.normal(size=shape) * np.linspace(5, 0.5, shape[1])
        ours = projection.project_pca(X, 3)
        ref = decomposition.PCA(3).fit_transform(X)
        np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-8)
        np.testing.assert_array_equal(ours, projection.project_pca(X.copy(), 3))
        # the sign convention depends on the data, not on the row order
        perm = rng.permutation(shape[0])
        np.testing.assert_allclose(projection.project_pca(X[perm], 3), ours[perm], atol=1e-8)


def test_pca_fit_on_reference_and_explained_variance():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(100, 4)) * [10, 1, 0.1, 0.01]
    p = projection.PcaProjector(2).fit(ref)
    assert p.explained_variance_ratio_[0] > 0.95
    new = rng.normal(size=(5, 4))
    np.testing.assert_allclose(projection.project_pca(new, 2, fit_on=ref), p.transform(new))
    with pytest.raises(SraVizError, match="before fit"):
        projection.PcaProjector().transform(new)
    with pytest.raises(SraVizError, match="4 features"):
        projection.PcaProjector(5).fit(ref)


def test_fit_linear_map_recovers_a_linear_relation():
    rng = np.random.default_rng(4)
    S, W = rng.normal(size=(200, 6)), rng.normal(size=(6, 9))
    np.testing.assert_allclose(geometry.fit_linear_map(S, S @ W, ridge=1e-10), W, atol=1e-6)


def test_crossfit_scores_are_out_of_sample_where_an_in_sample_fit_is_perfect():
    """More student dims than spans: an in-sample map fits any teacher exactly (cosine and retrieval 1.0),
    the cross-fitted one (folds by text) cannot for an unrelated teacher, but still finds a real relation."""
    rng = np.random.default_rng(3)
    S, text_id = rng.normal(size=(60, 80)), np.arange(60) // 6  # 10 texts of 6 spans, 80 > 60 dims
    unrelated = rng.normal(size=(60, 16))
    in_sample = S @ geometry.fit_linear_map(S, unrelated, ridge=1e-9)
    assert geometry.mean_matched_cosine(in_sample, unrelated) == pytest.approx(1.0, abs=1e-6)
    scores, projected = geometry.crossfit_scores(S, unrelated, text_id, ridge=1e-3)
    assert projected.shape == unrelated.shape
    assert abs(scores["cos"]) < 0.3 and scores["retrieval"] < 0.5
    assert scores["cka"] == pytest.approx(geometry.linear_cka(S, unrelated))
    assert "gram_distance_weighted" not in scores
    related = S @ rng.normal(size=(80, 16))  # an exact linear relation is found out of sample too
    scores, _ = geometry.crossfit_scores(S, related, text_id, ridge=1e-3, weights=rng.random(60))
    assert scores["cos"] > 0.5 and scores["retrieval"] > 0.5
    assert scores["gram_distance_weighted"] >= 0.0


def test_gram_distance_by_text_is_the_mean_over_texts_of_each_texts_distance():
    rng = np.random.default_rng(4)
    S, T = rng.normal(size=(9, 5)), rng.normal(size=(9, 3))
    text_id = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    per_text = [geometry.gram_distance(S[text_id == t], T[text_id == t]) for t in range(3)]
    assert geometry.gram_distance_by_text(S, T, text_id) == pytest.approx(np.mean(per_text))


def test_project_snapshots_pca_student_equal_to_teacher_lands_on_teacher():
    rng = np.random.default_rng(6)
    T = rng.normal(size=(20, 8))
    snaps = [T + rng.normal(size=T.shape), T + 0.1 * rng.normal(size=T.shape), T]
    for fit_on in ("all", "teacher+first", "teacher"):
        p = projection.project_snapshots(T, snaps, steps=[0, 5, 10], fit_on=fit_on)
        assert p.student.shape == p.teacher.shape == (3, 20, 2)
        np.testing.assert_allclose(p.student[2], p.teacher[2], atol=1e-9)  # same vectors, same place
        np.testing.assert_array_equal(p.teacher[0], p.teacher[1])  # fitted once: teacher fixed
        dist = np.linalg.norm(p.student - p.teacher, axis=2).mean(1)
        assert dist[0] > dist[1] > dist[2]
    with pytest.raises(SraVizError, match="fit_on"):
        projection.project_snapshots(T, snaps, fit_on="everything")


@pytest.mark.slow
def test_umap_same_seed_same_inputs_is_reproducible():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(loc=c, size=(40, 16)) for c in (-3, 0, 3)]).astype(np.float32)
    a = projection.UmapProjector(n_neighbors=10, random_state=7, n_epochs=50)
    b = projection.UmapProjector(n_neighbors=10, random_state=7, n_epochs=50)
    np.testing.assert_array_equal(a.fit_transform(X), b.fit_transform(X))
    np.testing.assert_array_equal(a.transform(X[:10] + 0.01), b.transform(X[:10] + 0.01))
    assert a.fit_transform(X).shape == (120, 2)
    assert set(a.timings) >= {"import", "fit"}


@pytest.mark.slow
def test_warm_up_and_umap_snapshots_reporting_progress():
    messages: list[str] = []
    assert projection.warm_up_umap(progress=messages.append) > 0
    assert any("warm-up done" in m for m in messages)
    rng = np.random.default_rng(2)
    T = rng.normal(size=(40, 8))
    snaps = [T + rng.normal(size=T.shape), T + 0.2 * rng.normal(size=T.shape)]
    p = projection.project_snapshots(
        T, snaps, method="umap", fit_on="teacher+first", n_neighbors=8, n_epochs=30
    )
    assert p.student.shape == (2, 40, 2) and np.isfinite(p.student).all()
    np.testing.assert_array_equal(p.teacher[0], p.teacher[1])
    with pytest.raises(SraVizError, match="at least 3 points"):
        projection.UmapProjector().fit(T[:2])


@pytest.mark.slow
def test_aligned_umap_sequence_is_reproducible_and_shaped():
    rng = np.random.default_rng(1)
    T = rng.normal(size=(30, 8))
    frames = [np.vstack([T, T + s * rng.normal(size=T.shape)]) for s in (1.0, 0.5, 0.1)]
    runs = [
        projection.UmapProjector(n_neighbors=8, aligned=True, n_epochs=30).fit_sequence(frames)
        for _ in range(2)
    ]
    assert [f.shape for f in runs[0]] == [(60, 2)] * 3
    for x, y in zip(*runs, strict=True):
        np.testing.assert_array_equal(x, y)
    p = projection.project_snapshots(
        T, [f[30:] for f in frames], method="aligned_umap", n_neighbors=8, n_epochs=30
    )
    assert p.teacher.shape == p.student.shape == (3, 30, 2)


@pytest.mark.slow
def test_metrics_on_real_hidden_states(default_pair):
    """CoM-like real vectors: the teacher's last layer against itself rotated, and against the student."""
    torch = pytest.importorskip("torch")
    text = "The quick brown fox jumps over the lazy dog. Paris is the capital of France; Rome is in Italy."
    outs = {}
    for side in ("teacher", "student"):
        lm = getattr(default_pair, side)
        ids = lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            hidden = lm.model(**ids, output_hidden_states=True).hidden_states[-1][0]  # (L, D)
        outs[side] = hidden.numpy()
    T = outs["teacher"]
    n = min(len(T), len(outs["student"]))
    T, S = T[:n], outs["student"][:n]  # positions are not spans, but both are real representations
    assert geometry.linear_cka(T, T @ _orthogonal(T.shape[1], 0)) == pytest.approx(1.0, abs=1e-6)
    assert geometry.gram_distance(T, T @ _orthogonal(T.shape[1], 1)) == pytest.approx(0.0, abs=1e-9)
    cka = geometry.linear_cka(T, S)
    assert 0.0 < cka < 1.0
    W = geometry.fit_linear_map(S, T)
    assert geometry.mean_matched_cosine(S @ W, T) > geometry.mean_matched_cosine(S[::-1] @ W, T)


def test_gram_distance_matches_the_training_loss_l_geo():
    """The probe metric and the engine's L_geo are one formula: same value for the same CoMs and weights."""
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("sra_viz.losses")
    rng = np.random.default_rng(9)
    S, T, w = rng.normal(size=(12, 7)), rng.normal(size=(12, 5)), rng.random(12)
    valid = torch.ones(1, 12, dtype=torch.bool)
    loss = losses.geometric_loss(torch.tensor(S)[None], torch.tensor(T)[None], torch.tensor(w)[None], valid)
    assert geometry.gram_distance(S, T, weights=w) == pytest.approx(float(loss), rel=1e-9)
    uniform = losses.geometric_loss(
        torch.tensor(S)[None], torch.tensor(T)[None], torch.ones(1, 12).double(), valid
    )
    assert geometry.gram_distance(S, T) == pytest.approx(float(uniform), rel=1e-9)


@pytest.mark.slow
def test_geometry_page_numbers_on_the_default_twelve_texts_are_below_one(default_pair):
    """The Geometry page's default (first 12 bundled examples, responses only, last layer): the cross-fitted
    cosine and retrieval are below 1.0, while the in-sample fit the page used to show is near-perfect."""
    from sra_viz.alignment import align_spans
    from sra_viz.data import load_bundled_corpus
    from sra_viz.distill.config import DistillConfig
    from sra_viz.extraction import extract_corpus

    tok_t, tok_s = default_pair.teacher.tokenizer, default_pair.student.tokenizer
    items = [
        align_spans(ex.text, tok_t, tok_s, prompt_end=ex.prompt_end) if ex.prompt_end else ex.text
        for ex in load_bundled_corpus()[:12]
    ]
    corpus = extract_corpus(items, default_pair, batch_size=4)
    T, S = corpus.teacher_centers[-1], corpus.student_centers[-1]
    text_id = corpus.frame["text_id"].to_numpy()
    scores, _ = geometry.crossfit_scores(S, T, text_id, DistillConfig().probe_ridge)
    in_sample = S @ geometry.fit_linear_map(S, T)
    print(
        f"{len(T)} spans; out-of-sample cos {scores['cos']:.3f} retrieval {scores['retrieval']:.3f}; "
        f"in-sample cos {geometry.mean_matched_cosine(in_sample, T):.3f}"
    )
    assert len(np.unique(text_id)) == 12
    assert 0.0 < scores["cos"] < 1.0 and 0.0 <= scores["retrieval"] < 1.0
    assert scores["cos"] < geometry.mean_matched_cosine(in_sample, T)
