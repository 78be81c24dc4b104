"""Aligners compared against the byte truth: hand-made tokenizations first, then the real default
tokenizers on texts with emoji, CJK and odd whitespace, each verdict recomputed here from plain byte sets."""

from __future__ import annotations

import pytest

from sra_viz import export
from sra_viz.aligner_comparison import (
    ALIGNERS,
    AlignerComparison,
    byte_end_groups,
    compare_aligners,
    judge,
    mined_pairs,
    text_tokens,
    uld_pairs,
)
from sra_viz.alignment import align_spans
from sra_viz.errors import SraVizError
from sra_viz.figures import aligner_comparison_figure
from sra_viz.mined import edit_distance_pairs, token_texts
from sra_viz.samples import SAMPLES
from sra_viz.tokenization import TokenizedText

# emoji (ZWJ family, flag, skin tone), CJK, a no-break space, an ideographic space, tabs and CRLF
HARD_TEXT = (
    "Trip \U0001f468\u200d\U0001f469\u200d\U0001f467 to \U0001f1ef\U0001f1f5 \U0001f44d\U0001f3fd! "
    "東京は日本の首都です。我们去北京。\tTabs\u00a0and\u3000gaps\r\n  end."
)


def _toy(text: str, pieces: list[str | None]) -> TokenizedText:
    """A tokenization of ``text`` from its pieces in order (None: a special token with no bytes)."""
    spans: list[tuple[int, int] | None] = []
    at = 0
    for piece in pieces:
        if piece is None:
            spans.append(None)
        else:
            size = len(piece.encode())
            spans.append((at, at + size))
            at += size
    assert at == len(text.encode()), "the pieces must spell the text"
    tokens = ["<s>" if p is None else p for p in pieces]
    return TokenizedText(text, list(range(len(pieces))), tokens, spans)


def _bytes(tokenized: TokenizedText, indices) -> set[int]:
    return {b for i in indices if (span := tokenized.byte_spans[i]) is not None for b in range(*span)}


def _assert_truth(comparison: AlignerComparison) -> None:
    """Every verdict and count of ``comparison`` recomputed from byte sets."""
    teacher, student = comparison.teacher, comparison.student
    both = _bytes(teacher, range(len(teacher.ids))) & _bytes(student, range(len(student.ids)))
    for name, pairs in comparison.pairs.items():
        wrong_bytes = 0
        for pair in pairs:
            t_side, s_side = _bytes(teacher, pair.teacher) & both, _bytes(student, pair.student) & both
            assert pair.wrong_bytes == len(t_side ^ s_side), (name, pair)
            assert pair.right == (t_side == s_side)
            assert _bytes(teacher, pair.teacher) == {b for a, e in pair.teacher_bytes for b in range(a, e)}
            assert _bytes(student, pair.student) == {b for a, e in pair.student_bytes for b in range(a, e)}
            wrong_bytes += pair.wrong_bytes
        counts = comparison.counts(name)
        assert counts.pairs == len(pairs)
        assert counts.wrong_pairs == sum(not p.right for p in pairs)
        assert counts.wrong_bytes == wrong_bytes
        for side, tokenized in (("teacher", teacher), ("student", student)):
            paired = {i for p in pairs for i in getattr(p, side)}
            assert all(tokenized.byte_spans[i] is not None for i in paired), f"{name} pairs a special token"
            unpaired = getattr(counts, f"unpaired_{side}")
            assert unpaired == len([i for i in text_tokens(tokenized) if i not in paired])


# ----------------------------------------------------------------------------- hand-made tokenizations


def test_uld_drifts_after_the_first_different_split_and_groups_do_not():
    text = "unbelievable cats"
    teacher = _toy(text, [None, "un", "believ", "able", " cats"])
    student = _toy(text, ["unbeliev", "able", " c", "ats"])
    assert uld_pairs(teacher, student) == [([1], [0]), ([2], [1]), ([3], [2]), ([4], [3])]
    assert [p.wrong_bytes for p in judge(teacher, student, uld_pairs(teacher, student))] == [
        len("unbeliev") - len("un"),  # "un" | "unbeliev"
        len("believ") + len("able"),  # "believ" | "able": nothing shared
        len("able") + len(" c"),
        len(" cats") - len("ats"),
    ]
    groups = byte_end_groups(teacher, student)
    assert groups == [([1, 2], [0]), ([3], [1]), ([4], [2, 3])]  # "un"+"believ" = "unbeliev"
    assert all(pair.right for pair in judge(teacher, student, groups))


def test_groups_equal_sra_spans_on_hand_made_tokens():
    text = "ab cd"
    teacher = _toy(text, ["a", "b", " cd"])
    student = _toy(text, ["ab", " c", "d"])
    assert byte_end_groups(teacher, student) == [([0, 1], [0]), ([2], [1, 2])]
    assert byte_end_groups(student, teacher) == [([0], [0, 1]), ([1, 2], [2])]


def test_a_side_left_over_is_a_last_group_with_an_empty_side():
    text = "abc"
    teacher = TokenizedText(text, [1, 2], ["ab", "c"], [(0, 2), (2, 3)])
    student = TokenizedText(text, [5], ["ab"], [(0, 2)])  # drops the last byte
    assert byte_end_groups(teacher, student) == [([0], [0]), ([1], [])]
    last = judge(teacher, student, byte_end_groups(teacher, student))[-1]
    assert last.right and last.wrong_bytes == 0  # byte 2 is the teacher's alone: held against no aligner


def test_a_byte_one_tokenizer_drops_is_held_against_no_pair():
    text = "a\x01b"
    teacher = TokenizedText(text, [1, 2, 3], ["a", "\x01", "b"], [(0, 1), (1, 2), (2, 3)])
    student = TokenizedText(text, [7, 8], ["a", "b"], [(0, 1), (2, 3)])
    pairs = judge(teacher, student, [([0, 1], [0]), ([2], [1])])
    assert [p.right for p in pairs] == [True, True]
    assert judge(teacher, student, [([1], [1])])[0].wrong_bytes == 1  # "\x01" | "b": only "b" is shared


def test_mined_pairs_are_the_engines_pairs_without_special_tokens():
    text = "The cat sat"
    teacher = _toy(text, [None, "The", " cat", " sat"])
    student = _toy(text, ["Th", "e", " cat", " sat"])
    full = edit_distance_pairs(token_texts(teacher), token_texts(student))
    assert mined_pairs(teacher, student) == [([a], [b]) for a, b in full if a != 0]
    # the BOS's empty text pulls the path onto the diagonal: "The" meets "e", a wrong pair
    assert mined_pairs(teacher, student) == [([1], [1]), ([2], [2]), ([3], [3])]
    verdicts = [(p.right, p.wrong_bytes) for p in judge(teacher, student, mined_pairs(teacher, student))]
    assert verdicts == [(False, 2), (True, 0), (True, 0)]


# ----------------------------------------------------------------------------- the real default tokenizers


@pytest.fixture(scope="module")
def hard(teacher_tokenizer, student_tokenizer) -> AlignerComparison:
    return compare_aligners(align_spans(HARD_TEXT, teacher_tokenizer, student_tokenizer))


def test_on_emoji_cjk_and_odd_whitespace_uld_is_wrong_and_sra_is_not(
    hard, teacher_tokenizer, student_tokenizer
):
    counts = {name: hard.counts(name) for name in ALIGNERS}
    assert counts["uld"].wrong_pairs > 0 and counts["uld"].wrong_bytes > 0
    assert counts["sra"].wrong_pairs == 0 and counts["sra"].wrong_bytes == 0
    assert counts["gold"].wrong_pairs == 0
    n_teacher, n_student = len(text_tokens(hard.teacher)), len(text_tokens(hard.student))
    assert counts["uld"].pairs == min(n_teacher, n_student)
    assert counts["uld"].unpaired_teacher + counts["uld"].unpaired_student == abs(n_teacher - n_student)
    assert counts["sra"].unpaired_teacher == counts["sra"].unpaired_student == 0
    assert counts["sra"].pairs == len(align_spans(HARD_TEXT, teacher_tokenizer, student_tokenizer))
    mined = hard.pairs["mined"]
    assert len({p.teacher for p in mined}) == len({p.student for p in mined}) == len(mined)  # one-to-one
    _assert_truth(hard)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_against_the_byte_truth(name, teacher_tokenizer, student_tokenizer):
    alignment = align_spans(SAMPLES[name], teacher_tokenizer, student_tokenizer)
    comparison = compare_aligners(alignment)
    _assert_truth(comparison)
    assert comparison.counts("sra").wrong_pairs == 0
    # GOLD's groups, built from byte ends alone, are SRA's spans when both tokenizations tile the text
    spans = [
        (list(range(s.teacher_start, s.teacher_end)), list(range(s.student_start, s.student_end)))
        for s in alignment.spans
    ]
    assert byte_end_groups(alignment.teacher, alignment.student) == spans


def test_word_level_spans_are_right_too(teacher_tokenizer, student_tokenizer):
    comparison = compare_aligners(
        align_spans(HARD_TEXT, teacher_tokenizer, student_tokenizer, granularity="word")
    )
    assert comparison.counts("sra").wrong_pairs == 0
    assert comparison.counts("sra").pairs < comparison.counts("gold").pairs  # words merge spans


def test_pairs_frame_has_one_row_per_pair(hard):
    frame = hard.pairs_frame()
    assert len(frame) == sum(len(pairs) for pairs in hard.pairs.values())
    for name in ALIGNERS:
        rows = frame[frame["aligner"] == name]
        assert rows["pair"].tolist() == list(range(len(hard.pairs[name])))
        assert (~rows["right"]).sum() == hard.counts(name).wrong_pairs
        assert rows["wrong_bytes"].sum() == hard.counts(name).wrong_bytes
    raw = HARD_TEXT.encode()
    for row in frame.itertuples():  # each side's text: the bytes it covers, decoded
        for side in ("teacher", "student"):
            covered = b"".join(raw[a:b] for a, b in getattr(row, f"{side}_bytes"))
            assert getattr(row, f"{side}_text") == covered.decode("utf-8", errors="replace")
    sra = frame[frame["aligner"] == "sra"]
    assert (sra["teacher_text"] == sra["student_text"]).all()
    csv = export.frame_to_csv(frame)  # what the page's download button gives
    assert csv.startswith("aligner,pair,teacher_tokens,teacher_text,") and csv.count("\nuld,") == len(
        hard.pairs["uld"]
    )


def test_frame_and_unknown_aligner(hard):
    frame = hard.to_frame()
    assert frame["aligner"].tolist() == list(ALIGNERS)
    assert frame.set_index("aligner").loc["uld", "wrong_pairs"] == hard.counts("uld").wrong_pairs
    with pytest.raises(SraVizError, match="aligner 'bpe' is not one of sra, gold, uld, mined"):
        hard.counts("bpe")


def test_figure_has_one_hover_per_pair_that_names_its_tokens_and_bytes(hard):
    fig = aligner_comparison_figure(hard)
    traces = {t.name: t for t in fig.data if t.name.endswith(" pairs") and t.hovertext}
    assert set(traces) == {f"{name} pairs" for name in ALIGNERS}
    raw = HARD_TEXT.encode()
    for name in ALIGNERS:
        pairs, trace = hard.pairs[name], traces[f"{name} pairs"]
        # three hover points a pair (teacher side, band, student side), all with the pair's text
        assert list(trace.customdata) == [k for k in range(len(pairs)) for _ in range(3)]
        texts = list(trace.hovertext)
        assert texts[::3] == texts[1::3] == texts[2::3]
        for k, (pair, text) in enumerate(zip(pairs, texts[::3], strict=True)):
            assert f"pair {k} · {'right' if pair.right else 'wrong'}" in text
            if pair.teacher_bytes:
                start, end = pair.teacher_bytes[0]
                assert f"[{start}, {end})" in text and f"{raw[start]:02X}" in text
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == len(ALIGNERS)
    for name, title in zip(ALIGNERS, titles, strict=True):
        counts = hard.counts(name)
        assert f"{counts.pairs} pairs" in title and f"<b>{counts.wrong_pairs} wrong</b>" in title
    legend = {t.name for t in fig.data if t.showlegend}
    assert {"right pairs", "wrong pairs"} <= legend
    assert fig.layout.xaxis.range[1] == len(raw) + 0.5
    assert len(aligner_comparison_figure(hard, aligners=["uld"]).layout.annotations) == 1
    with pytest.raises(SraVizError, match="aligner\\(s\\) 'bpe' not in the comparison"):
        aligner_comparison_figure(hard, aligners=["uld", "bpe"])
