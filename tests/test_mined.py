"""MinED: edit-distance alignment of hand-made token lists, the vocabulary map against brute force on the
real tokenizers, its sparse teacher target and KL, and a MinED session on the tiny seeded pair."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from rapidfuzz.distance import Levenshtein

from sra_viz.alignment import align_spans
from sra_viz.distill import DistillSession
from sra_viz.losses import target_kd
from sra_viz.mined import UNMAPPED, VocabMap, edit_distance_pairs, mapped_teacher_target, token_texts
from sra_viz.vocab import shared_vocab
from tests._configs import ONE_STEP_FULL, small_config


def _best_path_cost(a: list[str], b: list[str]) -> int:
    """The DTW optimum by brute force over every monotone path (small lists only)."""
    best = None
    n, m = len(a), len(b)
    # a path is a sequence of moves (1,1), (1,0), (0,1) from (0,0) to (n-1, m-1)
    for moves in itertools.product(((1, 1), (1, 0), (0, 1)), repeat=n + m - 2):
        i = j = 0
        cost = Levenshtein.distance(a[0], b[0])
        for di, dj in moves:
            i, j = i + di, j + dj
            if i >= n or j >= m:
                break
            cost += Levenshtein.distance(a[i], b[j])
            if (i, j) == (n - 1, m - 1):
                best = cost if best is None else min(best, cost)
                break
    if (n, m) == (1, 1):
        best = Levenshtein.distance(a[0], b[0])
    assert best is not None
    return best


def test_edit_distance_pairs_on_hand_made_token_lists():
    assert edit_distance_pairs(["a", "b", "c"], ["a", "b", "c"]) == [(0, 0), (1, 1), (2, 2)]
    # "The" meets "Th" and "e": a one-to-many cell, not distilled
    assert edit_distance_pairs(["The", " cat", " sat"], ["Th", "e", " cat", " sat"]) == [(1, 2), (2, 3)]
    # "New York" is one student token: both teacher tokens meet it, neither pair is one-to-one
    assert edit_distance_pairs(["New", " York", " is", " big"], ["New York", " is", " big"]) == [
        (2, 1),
        (3, 2),
    ]
    assert edit_distance_pairs([], ["a"]) == [] and edit_distance_pairs(["a"], []) == []


def test_edit_distance_pairs_lie_on_a_minimum_cost_path():
    rng = random.Random(0)
    pieces = ["a", "ab", "b", " c", "ca", "abc", "", "d"]
    for _ in range(40):
        a = [rng.choice(pieces) for _ in range(rng.randint(1, 4))]
        b = [rng.choice(pieces) for _ in range(rng.randint(1, 4))]
        pairs = edit_distance_pairs(a, b)
        assert pairs == sorted(pairs)
        assert all(x < y for x, y in zip([p[0] for p in pairs], [p[0] for p in pairs][1:], strict=False))
        assert all(x < y for x, y in zip([p[1] for p in pairs], [p[1] for p in pairs][1:], strict=False))
        # every returned pair lies on a minimum-cost path: best through (i, j) == the optimum
        best = _best_path_cost(a, b)
        for i, j in pairs:
            through = (
                _best_path_cost(a[: i + 1], b[: j + 1])
                + _best_path_cost(a[i:], b[j:])
                - Levenshtein.distance(a[i], b[j])
            )
            assert through == best, (a, b, pairs)


def test_token_texts_are_the_input_bytes_of_each_token(teacher_tokenizer, student_tokenizer):
    ascii_text = "Hello world, this is plain text: 12 + 30 = 42."
    alignment = align_spans(ascii_text, teacher_tokenizer, student_tokenizer)
    for side in (alignment.teacher, alignment.student):
        assert "".join(token_texts(side)) == ascii_text  # special tokens give ""
    text = "Hello 東京, naïve café 🤝!"
    data = text.encode("utf-8")
    alignment = align_spans(text, teacher_tokenizer, student_tokenizer)
    for side in (alignment.teacher, alignment.student):
        texts = token_texts(side)
        assert len(texts) == len(side.ids)
        for piece, span in zip(texts, side.byte_spans, strict=True):
            if span is None:
                assert piece == ""
                continue
            try:
                assert piece == data[span[0] : span[1]].decode("utf-8")  # whole characters: the text
            except UnicodeDecodeError:
                assert "\ufffd" in piece  # part of a character: replacement marks, still comparable


def test_vocab_map_keeps_the_shared_vocabulary_and_is_nearest_elsewhere(teacher_tokenizer, student_tokenizer):
    vmap = VocabMap(teacher_tokenizer, student_tokenizer)
    shared = shared_vocab(teacher_tokenizer, student_tokenizer)
    sample = random.Random(1).sample(range(len(shared)), 200)
    for k in sample:
        assert vmap.student_id(int(shared.teacher_ids[k])) == int(shared.student_ids[k])
    assert vmap.student_id(teacher_tokenizer.bos_token_id) == UNMAPPED
    texts = vmap._student_texts
    outside = [
        i
        for i in range(1000, 200_000, 997)
        if vmap._teacher_text(i) and vmap._teacher_text(i) not in vmap._by_text
    ]
    assert len(outside) > 20
    for teacher_id in outside[:20]:
        mapped = vmap.student_id(teacher_id)
        text = vmap._teacher_text(teacher_id)
        nearest = min(Levenshtein.distance(text, t) for t in texts)
        assert Levenshtein.distance(text, texts[mapped]) == nearest
    ids = torch.tensor([[teacher_tokenizer.bos_token_id, int(shared.teacher_ids[sample[0]])]])
    assert vmap.student_ids(ids).tolist() == [[UNMAPPED, int(shared.student_ids[sample[0]])]]


def test_mapped_target_and_its_kl(teacher_tokenizer, student_tokenizer):
    vmap = VocabMap(teacher_tokenizer, student_tokenizer)
    n_student = len(vmap._student_texts)
    gen = torch.Generator().manual_seed(0)
    teacher_logits = 5 * torch.randn(4, len(teacher_tokenizer), generator=gen)
    teacher_logits[:, teacher_tokenizer.bos_token_id] = 100.0  # an unmapped token holds most of the mass
    target = mapped_teacher_target(teacher_logits, vmap, n_student, tau=2.0, top_k=8)
    assert target.shape == (4, n_student)
    assert torch.allclose(target.sum(-1), torch.ones(4)) and (target >= 0).all()
    assert 1 <= int((target[0] > 0).sum()) <= 7  # 8 kept, the unmapped one dropped (ids may merge)
    student = torch.randn(4, n_student, generator=gen, requires_grad=True)
    loss = target_kd(student, target, tau=2.0)
    log_q = torch.log_softmax(student.detach() / 2.0, -1)
    by_hand = (
        sum(
            sum(float(p) * (torch.log(p) - log_q[m, j]).item() for j, p in enumerate(target[m]) if p > 0)
            for m in range(4)
        )
        / 4
    )
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-4)
    loss.backward()
    assert torch.isfinite(student.grad).all()
    assert float(target_kd(torch.log(target.clamp_min(1e-30)) * 2.0, target, tau=2.0)) == pytest.approx(
        0.0, abs=1e-4
    )


def test_a_mined_session_trains_on_edit_distance_pairs(tiny_pair, tmp_path):
    cfg = small_config(tmp_path / "mined", ONE_STEP_FULL, method="mined", eval_size=0)
    session = DistillSession(cfg, pair=tiny_pair)
    items = [session._prepare(e) for e in session.train_examples[:2]]
    assert all(item.mined_pairs for item in items)
    for item in items:
        assert all(
            tp >= item.teacher_label_start and sp >= item.student_label_start for tp, sp in item.mined_pairs
        )
    assert session.run() == "finished"
    (row,) = [r for r in session.history if r.get("mined") is not None]
    assert row["mined"] > 0 and row["loss"] == pytest.approx(0.5 * row["ce"] + 0.5 * row["mined"], rel=1e-4)
