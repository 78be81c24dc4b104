"""Span features: tensor functions on hand-made tensors, then properties on the real default pair.

Run: .venv/bin/python -m pytest tests/test_features.py -q   (-m "not slow" skips the real models)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sra_viz.errors import SraVizError
from sra_viz.extraction import analyze_text, extract_corpus, extract_features
from sra_viz.features import saliency_weights, span_centers, token_mass
from sra_viz.forward import forward_features, pad_batch, resolve_layer

SHORT = "The cat sat on the mat."
OTHER = "Paris is the capital of France, and Rome is the capital of Italy."


def _softmax_causal(batch: int, heads: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, length, length, generator=g)
    causal = torch.ones(length, length).tril().bool()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)  # (B, H, L, L)


# ----------------------------------------------------------------------------- tensor functions


def test_last_token_mass_reads_the_last_real_row_for_both_padding_sides():
    att = _softmax_causal(2, 3, 5)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    m_right = token_mass(att, right, "last_token")
    expected = att[0, :, 2, :].sum(0) * right[0]
    assert torch.allclose(m_right[0], expected / expected.sum())
    m_left = token_mass(att, left, "last_token")
    expected = att[0, :, 4, :].sum(0) * left[0]
    assert torch.allclose(m_left[0], expected / expected.sum())
    assert torch.allclose(m_left[1], m_right[1])  # no padding: same row either way


def test_mass_excludes_invalid_tokens_and_sums_to_one():
    att = _softmax_causal(1, 4, 6, seed=1)
    mask = torch.ones(1, 6)
    valid = torch.tensor([[False, True, True, True, True, True]])  # a BOS at 0
    for mode in ("last_token", "received", "uniform"):
        m = token_mass(att, mask, mode, valid_mask=valid)
        assert m[0, 0] == 0 and (m >= 0).all()
        assert m.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(token_mass(None, mask, "uniform", valid_mask=valid)[0, 1:], torch.full((5,), 0.2))


def test_received_mass_averages_over_the_queries_that_see_each_key():
    att = _softmax_causal(1, 1, 3, seed=2)
    m = token_mass(att, torch.ones(1, 3), "received")
    a = att[0, 0]
    raw = torch.stack([a[:, 0].sum() / 3, a[1:, 1].sum() / 2, a[2, 2] / 1])
    assert torch.allclose(m[0], raw / raw.sum())


def test_one_head_and_bad_inputs():
    att = _softmax_causal(1, 3, 4, seed=3)
    mask = torch.ones(1, 4)
    one = token_mass(att, mask, "last_token", head=1)
    assert torch.allclose(one[0], att[0, 1, 3])
    with pytest.raises(SraVizError, match="head 3 is out of range"):
        token_mass(att, mask, head=3)
    with pytest.raises(SraVizError, match="mass mode 'nope'"):
        token_mass(att, mask, "nope")
    with pytest.raises(SraVizError, match="expected \\(B, H, L, L\\)"):
        token_mass(att[:, :, :3, :3], mask)


def test_span_centers_weighted_mean_empty_and_zero_mass_spans():
    h = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)  # (B, L, D)
    mass = torch.tensor([[0.1, 0.3, 0.0, 0.6]])
    index = torch.tensor([[0, 0, 1, -1]])  # span 1 has zero mass, span 2 has no token
    centers, span_mass = span_centers(h, mass, index, 3)
    assert torch.allclose(centers[0, 0], (0.1 * h[0, 0] + 0.3 * h[0, 1]) / 0.4)
    assert torch.allclose(centers[0, 1], h[0, 2])  # zero mass: plain mean of its tokens
    assert torch.equal(centers[0, 2], torch.zeros(3))
    assert torch.allclose(span_mass, torch.tensor([[0.4, 0.0, 0.0]]))


def test_gradient_flows_into_hidden_but_never_into_mass():
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    att = _softmax_causal(2, 2, 5).requires_grad_(True)
    mask = torch.ones(2, 5)
    mass = token_mass(att, mask)
    assert not mass.requires_grad
    centers, span_mass = span_centers(hidden, mass, torch.tensor([[0, 0, 1, 1, 2]] * 2), 3)
    assert centers.grad_fn is not None and not span_mass.requires_grad
    grad_hidden, grad_att = torch.autograd.grad(centers.sum(), (hidden, att), allow_unused=True)
    assert grad_att is None and grad_hidden.abs().sum() > 0


def test_saliency_weights():
    w = saliency_weights(
        torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 2.0]]), torch.tensor([[1, 1, 0], [1, 1, 0]])
    )
    assert torch.allclose(w, torch.tensor([[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]]))
    squared = saliency_weights(torch.tensor([[1.0, 3.0]]), torch.tensor([[True, True]]), power=2.0)
    assert torch.allclose(squared, torch.tensor([[0.1, 0.9]]))
    with pytest.raises(SraVizError, match="power"):
        saliency_weights(torch.ones(1, 2), torch.ones(1, 2), power=-1.0)


def test_pad_batch_positions_start_at_each_texts_first_token():
    ids, mask, pos = pad_batch([[5, 6, 7], [8, 9]], pad_id=0, padding_side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 8, 9]] and pos.tolist() == [[0, 1, 2], [0, 0, 1]]
    ids, mask, pos = pad_batch([[5, 6, 7], [8, 9]], pad_id=1, padding_side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 9, 1]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]


# ----------------------------------------------------------------------------- real default pair


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["last_token", "received", "uniform"])
def test_real_masses_are_distributions_over_text_tokens(default_pair, mode):
    feats = analyze_text(OTHER, default_pair, mass_mode=mode, keep_attention=False)
    for side in (feats.teacher, feats.student):
        special = torch.tensor([s is None for s in getattr(feats.alignment, _side(feats, side)).byte_spans])
        assert (side.token_mass >= 0).all()
        assert side.token_mass[special].sum() == 0
        assert side.token_mass.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert side.span_mass.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert feats.alignment.teacher.byte_spans[0] is None  # Gemma's <bos> is there and got no mass
    assert feats.saliency.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(feats.saliency, feats.teacher.span_mass / feats.teacher.span_mass.sum())


def _side(feats, side) -> str:
    return "teacher" if side is feats.teacher else "student"


@pytest.mark.slow
def test_uniform_centers_are_mean_pooling_and_one_token_spans_are_their_token(default_pair):
    feats = analyze_text(OTHER, default_pair, mass_mode="uniform", layers=(-1, 3), keep_hidden=True)
    singles = 0
    for name in ("teacher", "student"):
        side = getattr(feats, name)
        to_span = feats.alignment.token_to_span(name)
        for layer in (-1, 3):
            hidden = side.hidden[layer]  # (L, D)
            for k in range(len(feats)):
                tokens = np.flatnonzero(to_span == k)
                assert torch.allclose(side.centers[layer][k], hidden[tokens].mean(0), rtol=1e-5, atol=1e-4)
                if len(tokens) == 1:
                    singles += 1
                    assert torch.allclose(side.centers[layer][k], hidden[tokens[0]], rtol=1e-5, atol=1e-4)
    assert singles > 0
    # the same one-token property under attention mass, where weights are far from uniform
    attended = analyze_text(OTHER, default_pair, keep_hidden=True)
    k = next(k for k, s in enumerate(attended.alignment.spans) if s.student_end - s.student_start == 1)
    token = attended.alignment.spans[k].student_start
    assert torch.allclose(attended.student.centers[-1][k], attended.student.hidden[-1][token], atol=1e-5)


@pytest.mark.slow
def test_hidden_states_match_hugging_face_layer_indexing(default_pair):
    for name in ("teacher", "student"):
        loaded = getattr(default_pair, name)
        ids = loaded.tokenizer(SHORT).input_ids
        with torch.no_grad():
            ref = loaded.model(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
        out = forward_features(loaded, [ids], layers=(0, 4, -1), attention_layer=4)
        n = len(ref.attentions)
        assert torch.equal(out.hidden[0], ref.hidden_states[1])  # block 0's output, not the embeddings
        assert torch.equal(out.hidden[4], ref.hidden_states[5])
        assert torch.equal(out.hidden[n - 1], ref.hidden_states[-1])  # last: post-final-norm, like HF
        assert torch.equal(out.attention, ref.attentions[4])


@pytest.mark.slow
@pytest.mark.parametrize("layer", [2, -1])
def test_chosen_attention_is_the_one_that_produced_the_chosen_hidden_states(default_pair, layer):
    loaded = default_pair.student
    blocks = loaded.model.get_decoder().layers
    index = resolve_layer(loaded, layer)
    seen = {}

    def keep(key, pick):
        def hook(
            _module, args, *rest
        ):  # returns None: a forward hook that returns a value replaces the output
            seen.setdefault(key, pick(args, rest))

        return hook

    hooks = [
        blocks[index].self_attn.register_forward_hook(keep("attention", lambda a, r: r[0][1])),
        blocks[index].register_forward_hook(keep("block", lambda a, r: r[0])),
        blocks[index].register_forward_pre_hook(keep("block_input", lambda a, r: a[0])),
    ]
    try:
        ids = loaded.tokenizer(OTHER).input_ids
        out = forward_features(loaded, [ids], layers=(layer,), attention_layer=layer)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(out.attention, seen["attention"])
    if index < len(blocks) - 1:
        assert torch.equal(out.hidden[index], seen["block"])
    else:  # the last layer is the block output after the final norm
        assert torch.allclose(out.hidden[index], loaded.model.get_decoder().norm(seen["block"]), atol=1e-5)
    assert not torch.allclose(out.hidden[index], seen["block_input"])  # not the previous layer's output


@pytest.mark.slow
def test_a_batch_equals_texts_one_by_one_on_both_padding_sides(default_pair):
    assert default_pair.teacher.tokenizer.padding_side == "left"
    assert default_pair.student.tokenizer.padding_side == "right"
    texts = [SHORT, OTHER]
    for mode in ("last_token", "received"):
        batched = extract_corpus(texts, default_pair, batch_size=2, mass_mode=mode, layers=(-1, 5))
        alone = extract_corpus(texts, default_pair, batch_size=1, mass_mode=mode, layers=(-1, 5))
        for column in ("teacher_mass", "student_mass", "saliency"):
            np.testing.assert_allclose(batched.frame[column], alone.frame[column], atol=1e-5)
        for layer in (-1, 5):
            for a, b in (
                (batched.teacher_centers, alone.teacher_centers),
                (batched.student_centers, alone.student_centers),
            ):
                np.testing.assert_allclose(a[layer], b[layer], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_corpus_frame_rows_match_center_matrices_and_single_text_features(default_pair):
    calls = []
    corpus = extract_corpus(
        [SHORT, OTHER, "Hi."],
        default_pair,
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
        teacher_layers=(-1,),
        student_layers=(10, -1),
    )
    assert calls[-1] == (3, 3) and len(calls) == 2
    assert set(corpus.student_centers) == {10, -1} and set(corpus.teacher_centers) == {-1}
    assert corpus.teacher_centers[-1].shape == (len(corpus.frame), 640)
    assert corpus.student_centers[10].shape == (len(corpus.frame), 576)
    one = analyze_text(OTHER, default_pair, teacher_layers=-1, student_layers=(10, -1))
    rows = (corpus.frame.text_id == 1).to_numpy()
    assert corpus.frame[rows].text.tolist() == [s.text for s in one.alignment.spans]
    np.testing.assert_allclose(corpus.student_centers[10][rows], one.student.centers[10].numpy(), atol=1e-4)
    assert corpus.frame.groupby("text_id").saliency.sum().to_numpy() == pytest.approx([1, 1, 1], abs=1e-5)


@pytest.mark.slow
def test_model_without_attentions_asks_for_eager(default_pair):
    model = default_pair.student.model
    model.set_attn_implementation("sdpa")
    try:
        with pytest.raises(SraVizError, match="attn_implementation='eager'"):
            analyze_text(SHORT, default_pair)
        # uniform mass needs no attention: it still works
        feats = analyze_text(SHORT, default_pair, mass_mode="uniform", keep_attention=False)
        assert feats.student.attention is None and len(feats) > 0
    finally:
        model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"


@pytest.mark.slow
def test_bad_inputs_say_what_was_given(default_pair):
    with pytest.raises(SraVizError, match="text is empty"):
        analyze_text("", default_pair)
    with pytest.raises(SraVizError, match="text is empty"):
        analyze_text(" \n\t ", default_pair)
    with pytest.raises(SraVizError, match="outside the vocabulary of model"):
        teacher_ids = default_pair.teacher.tokenizer(" Übermäßig").input_ids
        assert max(teacher_ids) >= 49152  # a Gemma id SmolLM2 cannot embed
        forward_features(default_pair.student, [teacher_ids])
    with pytest.raises(SraVizError, match="layer 30 is out of range"):
        analyze_text(SHORT, default_pair, layers=(30,))
    with pytest.raises(SraVizError, match="unknown option\\(s\\) mass_mod"):
        analyze_text(SHORT, default_pair, mass_mod="uniform")


@pytest.mark.slow
def test_prompt_tokens_take_mass_but_belong_to_no_span(default_pair):
    prompt = "Question: what is the capital of France? Answer:"
    feats = analyze_text(prompt + " Paris.", default_pair, prompt_end=len(prompt), keep_attention=False)
    assert feats.alignment.spans[0].char_start >= len(prompt)
    for side in (feats.teacher, feats.student):
        assert side.token_mass.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert 0 < side.span_mass.sum().item() < 1
    assert feats.saliency.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_long_text_is_truncated_at_a_span_boundary_or_windowed(default_pair):
    text = " ".join(f"word{i}" for i in range(60))
    full = analyze_text(text, default_pair, mass_mode="uniform", keep_hidden=True)
    assert len(full.alignment.teacher.ids) > 40 and not full.truncated
    with pytest.warns(UserWarning, match="max_tokens=40"):
        cut = analyze_text(text, default_pair, mass_mode="uniform", max_tokens=40)
    assert cut.truncated and "truncated" in cut.message and "windowed=True" in cut.message
    n = len(cut)
    assert 0 < n < len(full)
    assert len(cut.alignment.teacher.ids) <= 40 and len(cut.alignment.student.ids) <= 40
    assert cut.alignment.text == text[: cut.alignment.spans[-1].char_end]
    # causal models: the kept prefix has the same hidden states, so the same uniform CoMs
    np.testing.assert_allclose(cut.teacher.centers[-1], full.teacher.centers[-1][:n], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cut.student.centers[-1], full.student.centers[-1][:n], rtol=1e-4, atol=1e-3)

    windows = analyze_text(text, default_pair, max_tokens=40, windowed=True)
    assert windows.windows > 1 and not windows.truncated and len(windows) == len(full)
    for side in (windows.teacher, windows.student):
        assert side.token_mass.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert side.centers[-1].shape[0] == len(full) and side.attention is None
    assert windows.teacher.token_mass[0] == 0  # <bos> still gets no mass
    frame = windows.to_frame()
    assert frame.text.tolist() == [s.text for s in full.alignment.spans]


@pytest.mark.slow
def test_extract_features_takes_an_alignment_and_keeps_the_mass_layer_attention(default_pair):
    from sra_viz.alignment import align_spans

    alignment = align_spans(SHORT, default_pair.teacher.tokenizer, default_pair.student.tokenizer)
    feats = extract_features(alignment, default_pair, layers=(-1,), mass_layer=(5, -1), head=(0, None))
    n_t, n_s = len(alignment.teacher.ids), len(alignment.student.ids)
    assert feats.teacher.attention.shape == (4, n_t, n_t) and feats.student.attention.shape == (9, n_s, n_s)
    assert feats.teacher.mass_layer == 5 and feats.student.mass_layer == 29
    last = feats.teacher.attention[0, -1] * torch.tensor(
        [s is not None for s in alignment.teacher.byte_spans]
    )
    assert torch.allclose(feats.teacher.token_mass, last / last.sum(), atol=1e-6)
    frame = feats.to_frame()
    assert list(frame.columns[:2]) == ["span_id", "text"] and len(frame) == len(alignment.spans)
