"""Corpus-level saliency: span kinds, the mass shares on hand-made span frames (sinks, equal text weights,
top texts), then the whole path on the tiny seeded pair and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sra_viz.corpus_saliency import (
    AXES,
    ORDER,
    aggregate_span_mass,
    corpus_saliency,
    length_kind,
    position_kind,
    span_script,
)
from sra_viz.errors import SraVizError
from sra_viz.extraction import extract_corpus
from sra_viz.figures import corpus_saliency_figure
from sra_viz.samples import SAMPLES


def _frame(texts: list[list[tuple[str, float]]]) -> pd.DataFrame:
    """A span frame: per text, (span text, teacher mass) in order."""
    rows = [
        {"text_id": t, "span_id": k, "text": text, "teacher_mass": mass}
        for t, spans in enumerate(texts)
        for k, (text, mass) in enumerate(spans)
    ]
    return pd.DataFrame(rows)


def test_span_kinds():
    cases = {
        "\t \u3000": "whitespace",
        " the": "Latin",
        "café": "Latin",
        "東京": "CJK",
        "カタ": "CJK",
        "서울": "CJK",
        " 1,234": "digits",
        "。": "punct",
        "👨\u200d👩\u200d👧": "punct",
        "\u0301": "punct",  # a lone combining mark
        "नमस्ते": "other",
        "мир": "other",
    }
    assert {text: span_script(text) for text in cases} == cases
    assert [length_kind(n) for n in (1, 2, 3, 5, 8, 9, 40)] == [
        "1 char",
        "2 chars",
        "3–4 chars",
        "5–8 chars",
        "5–8 chars",
        "9+ chars",
        "9+ chars",
    ]
    assert [position_kind(k, 5) for k in range(5)] == ORDER["position"]
    assert position_kind(0, 1) == "40–60%"  # a lone span sits in the middle


def test_shares_weigh_every_text_the_same_and_sum_to_one():
    frame = _frame(
        [
            [("Hi", 0.5), (" 東京", 0.5)],  # 2 spans: no sinks to drop
            [("A", 0.1), (" b", 0.2), ("12", 0.3), ("!", 0.4)],
        ]
    )
    kept = aggregate_span_mass(frame, drop_sinks=False)
    for axis in AXES:
        table = kept.kinds[axis]
        assert table["kind"].tolist() == ORDER[axis]
        assert np.isclose(table["mass"].sum(), 1.0) and np.isclose(table["spans"].sum(), 1.0)
        assert table["n_spans"].sum() == 6
    script = kept.kinds["script"].set_index("kind")
    assert np.isclose(script.loc["CJK", "mass"], 0.5 / 2)  # half of text 0, texts weigh 1/2 each
    assert np.isclose(script.loc["Latin", "mass"], (0.5 + 0.1 + 0.2) / 2)
    assert np.isclose(script.loc["Latin", "spans"], (1 / 2 + 2 / 4) / 2)
    assert np.isclose(script.loc["digits", "mass"], 0.3 / 2) and script.loc["other", "n_spans"] == 0
    dropped = aggregate_span_mass(frame, drop_sinks=True)  # text 1 loses "A" and "!", keeps " b", "12"
    assert dropped.n_spans == 4 and dropped.texts == 2
    digits = dropped.kinds["script"].set_index("kind").loc["digits", "mass"]
    assert np.isclose(digits, (0.3 / 0.5) / 2)  # renormalised over the kept spans
    assert np.isclose(dropped.kinds["position"]["mass"].sum(), 1.0)


def test_top_texts_sum_over_spans_with_the_same_text():
    frame = _frame([[(" the", 0.6), ("cat", 0.4)], [(" the", 0.2), ("dog", 0.8)]])
    top = aggregate_span_mass(frame, drop_sinks=False, top=2).top
    assert top["text"].tolist() == [" the", "dog"]
    assert np.allclose(top["mass"], [(0.6 + 0.2) / 2, 0.8 / 2]) and top["count"].tolist() == [2, 1]


def test_bad_frames_are_one_clear_error():
    with pytest.raises(SraVizError, match="lacks the column"):
        aggregate_span_mass(pd.DataFrame({"text_id": [0], "text": ["a"]}))
    with pytest.raises(SraVizError, match="no text has span mass"):
        aggregate_span_mass(_frame([[("a", 0.0)]]))
    with pytest.raises(SraVizError, match="at least one text"):
        corpus_saliency([], pair=None)


def test_corpus_saliency_on_the_tiny_pair_and_its_figure(tiny_pair):
    texts = [SAMPLES["Prose"], SAMPLES["CJK"], SAMPLES["Numbers"]]
    result = corpus_saliency(texts, tiny_pair)
    frame = extract_corpus(texts, tiny_pair).frame
    assert result.texts == 3 and result.n_spans == len(frame) - 2 * 3  # both sinks of each text left out
    again = aggregate_span_mass(frame)
    for axis in AXES:
        assert np.isclose(result.kinds[axis]["mass"].sum(), 1.0)
        pd.testing.assert_frame_equal(result.kinds[axis], again.kinds[axis])
    script = result.kinds["script"].set_index("kind")
    assert script.loc["CJK", "n_spans"] > 0 and script.loc["digits", "n_spans"] > 0
    fig = corpus_saliency_figure(result)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 7  # mass and span share on three axes, the top texts
    assert list(bars[0].x) == ORDER["script"] and np.allclose(bars[0].y, result.kinds["script"]["mass"])
    assert len(bars[-1].y) == len(result.top)
    assert "3 texts" in fig.layout.annotations[-1].text and "left out" in fig.layout.annotations[-1].text
