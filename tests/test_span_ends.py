"""The compiled per-token loops (sra_viz/_span_ends.c) against their Python twins: same results, same
errors, and the same alignments end to end on real tokenizers.

The package builds the module when a compiler is there (pyproject's optional extension); without one
the Python twins run and these tests are skipped.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sra_viz.alignment as alignment
import sra_viz.tokenization as tokenization
from sra_viz.alignment import _merge_tilings, align_spans
from sra_viz.tokenization import spelled_ends_python
from tests.test_tokenization import TEXTS

compiled = pytest.importorskip("sra_viz._span_ends", reason="built without a compiler: the Python twins run")


def test_the_package_uses_the_compiled_loops():
    assert tokenization.spelled_ends is compiled.spelled_ends
    assert alignment.common_ends is compiled.common_ends


@st.composite
def spelling_case(draw):
    """A table of byte strings (some empty), ids into it, and data that is their bytes or nearly."""
    table = draw(st.lists(st.binary(max_size=4), min_size=1, max_size=12))
    ids = draw(st.lists(st.integers(0, len(table) - 1), max_size=20))
    data = b"".join(table[i] for i in ids)
    change = draw(st.sampled_from(["none", "flip", "cut", "extend"]))
    if change == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif change == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif change == "extend":
        data += draw(st.binary(min_size=1, max_size=3))
    return ids, table, data


@settings(max_examples=400, deadline=None)
@given(case=spelling_case())
def test_spelled_ends_equals_its_python_twin(case):
    ids, table, data = case
    found = compiled.spelled_ends(ids, table, data)
    assert found == spelled_ends_python(ids, table, data)
    if found is not None:  # the ends are the running sum of the pieces' lengths
        assert found[0] == list(itertools.accumulate(len(table[i]) for i in ids))
        assert found[1] == all(table[i] for i in ids)


def test_spelled_ends_edges():
    for spell in (compiled.spelled_ends, spelled_ends_python):
        assert spell([], [b"a"], b"") == ([], True)
        assert spell([], [b"a"], b"a") is None
        assert spell([0, 1, 0], [b"ab", b""], b"abab") == ([2, 2, 4], False)
        with pytest.raises(IndexError):
            spell([0, 2], [b"a", b"b"], b"ab")  # the table is too short: the caller builds it
        with pytest.raises(IndexError):
            spell([0], [], b"a")
    with pytest.raises(TypeError):
        compiled.spelled_ends((0,), [b"a"], b"a")  # lists only
    with pytest.raises(TypeError):
        compiled.spelled_ends([0], ["a"], b"a")  # the table holds bytes


@st.composite
def increasing_pair(draw):
    """Two strictly increasing lists of token ends, often sharing values."""
    pool = draw(st.lists(st.integers(1, 60), unique=True, max_size=30))
    pick = st.lists(st.sampled_from(pool), unique=True) if pool else st.just([])
    return sorted(draw(pick)), sorted(draw(pick))


@settings(max_examples=400, deadline=None)
@given(ends=increasing_pair())
def test_common_ends_equals_the_python_merge(ends):
    a, b = ends
    assert compiled.common_ends(a, b) == _merge_tilings(a, b)


def test_common_ends_examples():
    assert compiled.common_ends([1, 3, 6], [3, 4, 6]) == ([0, 3, 6], [2, 3], [1, 3])
    assert compiled.common_ends([], [1, 2]) == ([0], [], [])
    assert compiled.common_ends([5, 9], [5, 9]) == ([0, 5, 9], [1, 2], [1, 2])
    with pytest.raises(TypeError):
        compiled.common_ends([1, "2"], [1, 2])


def _spans_both_ways(text, teacher, student, monkeypatch):
    fast = align_spans(text, teacher, student)
    with monkeypatch.context() as m:
        m.setattr(tokenization, "spelled_ends", spelled_ends_python)
        m.setattr(alignment, "common_ends", _merge_tilings)
        slow = align_spans(text, teacher, student)
    return fast, slow


PAIRS = [("teacher_tokenizer", "student_tokenizer"), ("gpt2_tokenizer", "student_tokenizer")]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("_")[0])
def test_alignments_are_the_same_either_way(pair, request, monkeypatch):
    teacher, student = (request.getfixturevalue(name) for name in pair)
    for text in [*TEXTS, "a" * 3000, "東京 " * 700]:  # and two long texts
        fast, slow = _spans_both_ways(text, teacher, student, monkeypatch)
        assert fast.spans == slow.spans
        assert (fast.teacher.byte_spans, fast.student.byte_spans) == (
            slow.teacher.byte_spans,
            slow.student.byte_spans,
        )


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("_")[0])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_alignments_are_the_same_either_way_on_random_unicode(pair, text, request, monkeypatch):
    teacher, student = (request.getfixturevalue(name) for name in pair)
    fast, slow = _spans_both_ways(text, teacher, student, monkeypatch)
    assert fast.spans == slow.spans
