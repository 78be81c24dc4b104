"""The layer plan and the heads on the tiny seeded pair: pairs validated and ordered by depth, per-layer
masses checked against a hand computation from the raw attentions that Hugging Face returns
(``output_attentions``); the V∩ mask at any τ; a softcapped student head applied to the CoMs.
"""

from __future__ import annotations

import json

import pytest
import torch

from sra_viz.distill import DistillConfig, DistillSession
from sra_viz.distill.batch import collate
from sra_viz.distill.plan import LayerPlan
from sra_viz.distill.side_pass import run_side
from sra_viz.errors import SraVizError
from sra_viz.extraction import extract_features
from sra_viz.features import POOL_EPS
from tests._configs import ONE_STEP_FULL, small_config

MULTI_TOKEN_TEXT = "東京の朝は早い。☕️ and 👩‍👩‍👧 visit the café; naïve résumé numbers 1234567 and ∑x²."


def _batch(session: DistillSession, n: int = 2):
    items = [session._prepare(e) for e in session.train_examples[:n]]
    return collate(items, session.teacher_padding_side, session.student_padding_side)


def _hand_centers(loaded, ids: list[int], span: torch.Tensor, n_spans: int, layer: int, mass_block: int):
    """CoMs (N, D) and span masses (N,) of one unpadded text, from ``output_attentions``/``hidden_states``:
    m_t = Σ_h A[h, q, t] over tokens in spans (q = last token), normalised; c_k = Σ w_t h_t / Σ w_t with
    w_t = m_t + POOL_EPS (a span the last token cannot see, as in a sliding-window layer, gets its plain
    mean)."""
    model = loaded.model
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    raw = out.attentions[mass_block][0].sum(0)[-1]  # (L,) attention of the last token, summed over heads
    mass = torch.where(span >= 0, raw, 0.0)
    mass = mass / mass.sum()
    hidden = out.hidden_states[layer + 1][0]  # (L, D); the last entry is post-norm, like forward_features
    w = mass + POOL_EPS
    centers = torch.stack(
        [(w[span == k, None] * hidden[span == k]).sum(0) / w[span == k].sum() for k in range(n_spans)]
    )
    return centers, torch.stack([mass[span == k].sum() for k in range(n_spans)])


def test_layer_pairs_are_validated_and_ordered_by_depth(tiny_pair):
    teacher, student = tiny_pair.teacher, tiny_pair.student
    plan = LayerPlan.build([[-1, -1], [0, 0]], [2.0, 1.0], teacher, student)
    assert plan.pairs == ((0, 0), (1, 1)) and plan.weights == (1.0, 2.0) and plan.deepest == (1, 1)
    assert plan.mass_layer("teacher", 0) == 0 and plan.mass_layer("student", 1) == 1
    last = LayerPlan.build([[-1, -1], [0, 0]], None, teacher, student, mass_layers="last_pair")
    assert last.mass_layer("teacher", 0) == 1 and last.mass_layer("student", 0) == 1
    off = LayerPlan.build([[0, 0]], None, teacher, student, teacher_masses=False)
    assert off.mass_layer("teacher", 0) is None and off.mass_layer("student", 0) == 0
    for pairs, needle in (
        ([[0, 0], [-2, 1]], "teacher block 0 twice"),
        ([[0, 1], [1, 1]], "student block 1 twice"),
        ([[0, 1], [1, 0]], "cross"),
        ([[2, 0]], "out of range"),
        ([], "empty"),
    ):
        with pytest.raises(SraVizError, match=needle):
            LayerPlan.build(pairs, None, teacher, student)
    with pytest.raises(SraVizError, match="mass_layers='bogus'"):
        LayerPlan.build([[0, 0]], None, teacher, student, mass_layers="bogus")


@pytest.mark.parametrize("mass_layers", ["per_layer", "last_pair"])
def test_masses_of_each_layer_match_a_hand_computation_from_raw_attentions(tiny_pair, tmp_path, mass_layers):
    session = DistillSession(
        small_config(
            tmp_path / mass_layers, ONE_STEP_FULL, layer_pairs=[[0, 0], [-1, -1]], mass_layers=mass_layers
        ),
        pair=tiny_pair,
    )
    batch = _batch(session)
    for side, loaded in (("teacher", session.teacher), ("student", session.student_view)):
        layers = [0, 1]
        masses = session.plan.mass_layers_of(side, layers)
        assert masses == ({0: 0, 1: 1} if mass_layers == "per_layer" else {0: 1, 1: 1})
        out = run_side(loaded, batch, side, layers, masses, "last_token", True, grad=False)
        for b, item in enumerate(batch.items):
            span = torch.as_tensor(getattr(item, f"{side}_span"))
            offset = int((batch.teacher_offset if side == "teacher" else batch.student_offset)[b])
            for layer in layers:
                centers, span_mass = _hand_centers(
                    loaded, item.ids(side), span, item.n_spans, layer, masses[layer]
                )
                assert torch.allclose(out.centers[layer][b, : item.n_spans], centers, atol=1e-5), (
                    side,
                    layer,
                )
                assert torch.allclose(out.span_mass[layer][b, : item.n_spans], span_mass, atol=1e-6)
                pooled = out.pool_mass[layer][b, offset : offset + len(item.ids(side))]
                assert torch.allclose(pooled.sum(), torch.tensor(1.0), atol=1e-5)
        if mass_layers == "per_layer":  # two layers' attentions really differ: the test can tell them apart
            assert not torch.allclose(out.span_mass[0], out.span_mass[1], atol=1e-3)


def test_two_layer_pairs_in_either_order_give_identical_losses_and_probe(tiny_pair, tmp_path):
    runs = {}
    for name, pairs, weights in (
        ("up", [[0, 0], [1, 1]], [1.0, 2.0]),
        ("down", [[1, 1], [0, 0]], [2.0, 1.0]),
    ):
        cfg = small_config(
            tmp_path / name, ONE_STEP_FULL, layer_pairs=pairs, layer_weights=weights, use_dynamics=True
        )
        session = DistillSession(cfg, pair=tiny_pair)
        assert session.plan.pairs == ((0, 0), (1, 1)) and session.plan.weights == (1.0, 2.0)
        terms = session.loss_terms(_batch(session))
        assert list(terms) == ["span", "geo", "kd", "dynamics", "ce"]
        runs[name] = ({k: float(v.detach()) for k, v in terms.items()}, session.evaluate(snapshot=False))
    assert runs["up"][0] == runs["down"][0]
    assert runs["up"][1] == pytest.approx(runs["down"][1], rel=1e-6, nan_ok=True)


def test_mass_layer_choice_changes_only_multi_pair_runs(tiny_pair, tmp_path):
    """With one pair both choices are the same masses; with two, the shallow pair's CoMs change (the texts
    hold multi-token spans: CJK, emoji, accents, numbers; a one-token span's CoM is its token, whatever
    the masses)."""
    data = tmp_path / "spans.jsonl"
    data.write_text(
        "".join(json.dumps({"text": f"{i}. {MULTI_TOKEN_TEXT}"}) + "\n" for i in range(12))
    )  # 10+: the held-out split

    def span_term(**over) -> float:
        name = "-".join(f"{k}={v}" for k, v in over.items()).replace(" ", "").replace(",", "")
        session = DistillSession(
            small_config(tmp_path / name, ONE_STEP_FULL, data=str(data), max_length=48, **over),
            pair=tiny_pair,
        )
        return float(session.loss_terms(_batch(session))["span"].detach())

    assert span_term(mass_layers="per_layer") == span_term(mass_layers="last_pair")  # one pair: the same
    two = dict(layer_pairs=[[0, 0], [1, 1]])
    assert span_term(mass_layers="per_layer", **two) != pytest.approx(
        span_term(mass_layers="last_pair", **two)
    )


def test_extract_features_pools_each_layer_with_its_own_masses(tiny_pair):
    text = MULTI_TOKEN_TEXT
    feats = extract_features(text, tiny_pair, layers=(0, -1))
    single = extract_features(text, tiny_pair, layers=(0, -1), mass_layer=-1)
    for side in ("teacher", "student"):
        loaded, got, old = getattr(tiny_pair, side), getattr(feats, side), getattr(single, side)
        ids = getattr(feats.alignment, side).ids
        span = torch.as_tensor(feats.alignment.token_to_span(side))
        for layer, block in ((0, 0), (-1, 1)):
            centers, span_mass = _hand_centers(loaded, ids, span, len(feats), block, block)
            assert torch.allclose(got.centers[layer], centers, atol=1e-5), (side, layer)
            assert torch.allclose(got.span_masses[layer], span_mass, atol=1e-6)
        assert got.mass_layer == 1 and torch.allclose(got.span_mass, got.span_masses[-1])
        assert torch.allclose(old.centers[-1], got.centers[-1])  # the deepest layer: same masses either way
        centers, _ = _hand_centers(
            loaded, ids, span, len(feats), 0, 1
        )  # layer 0 pooled with layer 1's masses
        assert torch.allclose(old.centers[0], centers, atol=1e-5)
        assert not torch.allclose(old.centers[0], got.centers[0], atol=1e-4)


# ----------------------------------------------------------------------------- the heads on V∩


def _multi_token_data(tmp_path) -> str:
    data = tmp_path / "spans.jsonl"
    data.write_text("".join(json.dumps({"text": f"{i}. {MULTI_TOKEN_TEXT}"}) + "\n" for i in range(12)))
    return str(data)


def test_the_shared_vocabulary_mask_holds_at_any_temperature(tiny_pair, tmp_path):
    """Both KD paths divide by τ before masking: at τ = 1000 the columns outside V∩ still get probability
    exactly 0 on both sides (masked first, −1e4/1000 = −10 would let them back in), and the KL equals the
    one over the V∩ columns alone."""
    from sra_viz.distill.loss_terms import exact_pair_logits, student_forward, student_span_logits
    from sra_viz.losses import exact_token_kd

    tau = 1000.0
    cfg = small_config(
        tmp_path / "tau",
        ONE_STEP_FULL,
        data=_multi_token_data(tmp_path),
        tau=tau,
        teacher_head_dtype="float32",
    )
    session = DistillSession(cfg, pair=tiny_pair)
    heads, plan = session.heads, session.plan
    ids = heads.shared.student_ids
    outside = torch.ones(heads.shared_mask.shape[0], dtype=torch.bool)
    outside[ids] = False
    assert outside.any() and (~outside).any()
    gen = torch.Generator().manual_seed(0)
    student_logits = 30 * torch.randn(6, outside.shape[0], generator=gen)  # (M, V_S)
    teacher_hidden = 10 * torch.randn(6, session.teacher.model.config.hidden_size, generator=gen)  # (M, D_T)
    with torch.no_grad():
        z_s, z_t = exact_pair_logits(heads, student_logits, teacher_hidden, tau)
        for z in (z_s, z_t):
            assert float(torch.softmax(z, -1)[:, outside].max()) == 0.0
        teacher_full = session.teacher.model.get_output_embeddings()(teacher_hidden)  # (M, V_T)
        on_shared = exact_token_kd(
            (student_logits[:, ids] / tau).double(),
            (teacher_full[:, heads.shared.teacher_ids] / tau).double(),
        )
        masked = exact_token_kd(z_s.double(), z_t.double())
        assert float(masked) == pytest.approx(float(on_shared), rel=1e-5)
        # span KD: pooled student span logits at τ = 1000, masked after scaling
        last = plan.student_last
        batch = _batch(session)
        masses = plan.mass_layers_of("student", [last])
        s, logits = student_forward(
            session.student_view, heads, batch, session.config, [last], masses, last, [last]
        )
        z_span = student_span_logits(heads, logits, s, last, batch.span_valid, tau)
        assert float(torch.softmax(z_span, -1)[:, outside].max()) == 0.0


def test_a_softcapped_student_head_is_applied_to_the_centers(tiny_pair, tmp_path):
    """Span logits are head(CoM). A linear head gives the CoM's pooled token logits (what the engine pools);
    a softcapped head s·tanh(Wh/s) does not, so it runs on the CoMs: pooling capped token logits differs."""
    from sra_viz.distill.loss_terms import student_forward, student_span_logits
    from sra_viz.distill.side_pass import pool_spans

    session = DistillSession(
        small_config(tmp_path / "cap", ONE_STEP_FULL, data=_multi_token_data(tmp_path)), pair=tiny_pair
    )
    heads, plan = session.heads, session.plan
    last, tau, cap = plan.student_last, 2.0, 0.05
    ids = heads.shared.student_ids
    with torch.no_grad():
        batch = _batch(session)
        masses = plan.mass_layers_of("student", [last])
        s, logits = student_forward(
            session.student_view, heads, batch, session.config, [last], masses, last, [last]
        )
        valid = batch.span_valid
        direct = session.student.model.get_output_embeddings()(s.centers[last][valid]).float()  # (M, V_S)
        linear = student_span_logits(heads, logits, s, last, valid, tau)
        assert torch.allclose(linear[:, ids], direct[:, ids] / tau, atol=1e-4)
        heads.student_softcap = cap
        capped_tokens = heads.student_logits(s.forward.hidden[last])  # (B, L_S, V_S)
        capped = student_span_logits(heads, capped_tokens, s, last, valid, tau)
        want = cap * torch.tanh(direct / cap) / tau
        assert torch.allclose(capped[:, ids], want[:, ids], atol=1e-6)
        pooled = pool_spans(capped_tokens.float(), s.span_index, s.pool_mass[last], valid)[:, ids] / tau
        assert (pooled - want[:, ids]).abs().max() > 1e-3  # pooling capped logits is not head(CoM)


# ----------------------------------------------------------------------------- layer schedule


def test_uniform_layer_schedule_spaces_pairs_evenly_with_weights_growing_with_depth(tiny_pair, tmp_path):
    from sra_viz.distill.config import scheduled_pairs

    assert scheduled_pairs("last", 18, 30) == ([[-1, -1]], None)
    assert scheduled_pairs("uniform:3", 18, 30) == ([[5, 9], [11, 19], [17, 29]], [1 / 3, 2 / 3, 1.0])
    for teacher_blocks, student_blocks in ((18, 30), (18, 6), (7, 7), (26, 2), (3, 40)):
        for k in range(1, min(teacher_blocks, student_blocks) + 1):
            pairs, weights = scheduled_pairs(f"uniform:{k}", teacher_blocks, student_blocks)
            assert len(pairs) == k and pairs[-1] == [teacher_blocks - 1, student_blocks - 1]
            for side in (0, 1):
                blocks = [p[side] for p in pairs]
                assert blocks == sorted(set(blocks)) and 0 <= blocks[0]  # distinct, shallow -> deep
                gaps = [b - a for a, b in zip([-1, *blocks], blocks, strict=False)]
                assert max(gaps) - min(gaps) <= 1  # evenly spaced to within rounding
            assert weights == sorted(weights) and weights[-1] == 1.0
    with pytest.raises(SraVizError, match="K <= 2"):
        scheduled_pairs("uniform:3", 2, 30)
    with pytest.raises(SraVizError, match="not both"):
        DistillConfig(layer_schedule="uniform:2", layer_pairs=[[0, 0]])
    with pytest.raises(SraVizError, match="uniform:K"):
        DistillConfig(layer_schedule="uniform:x")
    session = DistillSession(
        small_config(tmp_path / "schedule", ONE_STEP_FULL, layer_schedule="uniform:2"), pair=tiny_pair
    )
    assert session.plan.pairs == ((0, 0), (1, 1)) and session.plan.weights == (0.5, 1.0)
    assert session.config.layer_pairs == [[-1, -1]]  # the config keeps what the user asked for
    span = session.loss_terms(_batch(session))["span"]
    assert torch.isfinite(span)
