"""The Streamlit app driven headlessly with ``streamlit.testing.v1.AppTest``: every page, good and bad input.

Run: ``.venv/bin/python -m pytest tests/test_app.py -q`` (``-m "not slow"`` skips the pages that load the
real default models). Models are loaded once per process (``st.cache_resource``) and shared by tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sra_viz.aligner_comparison import ALIGNER_TITLES, ALIGNERS, compare_aligners
from sra_viz.alignment import align_spans
from sra_viz.samples import SAMPLES

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGES = "sra_viz/ui/pages"
TIMEOUT = 300  # seconds per script run: loading both models takes ~10 s alone on 2 busy cores


def open_page(page: str | None = None, **session) -> AppTest:
    """A fresh app session (its own session state), run once, then switched to ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(f"{PAGES}/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    """No uncaught exception and no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as their JSON specs."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# ----------------------------------------------------------------------------- router and Models page


def test_router_opens_on_models_with_default_pair():
    at = open_page()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Models"]
    assert at.selectbox(key="models_teacher_default").value == "gemma3-270m"
    assert at.selectbox(key="models_student_default").value == "smollm2-135m"
    assert at.radio(key="models_teacher_source").value == "Default"


def test_every_page_is_registered():
    at = open_page()
    for page in ("models", "alignment", "saliency", "geometry", "distill", "learn"):
        at.switch_page(f"{PAGES}/{page}.py")  # raises ValueError for a page st.navigation does not know


def test_models_page_reports_a_missing_folder():
    at = open_page()
    at.radio(key="models_teacher_source").set_value("Local folder").run()
    at.text_input(key="models_teacher_Local folder").set_value("/no/such/model/folder").run()
    at.button(key="models_load").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "no such file or folder" in at.error[0].value and "/no/such/model/folder" in at.error[0].value
    assert at.session_state["teacher_spec"] == "gemma3-270m"  # a failed load leaves the pair as it was


def test_models_page_reports_a_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file")
    at = open_page()
    at.radio(key="models_student_source").set_value("GGUF file").run()
    at.text_input(key="models_student_GGUF file").set_value(str(fake)).run()
    at.button(key="models_load").click().run()
    assert not at.exception
    assert "is not a GGUF file" in at.error[0].value


def test_models_page_refuses_an_empty_spec():
    at = open_page()
    at.radio(key="models_teacher_source").set_value("Hugging Face id").run()
    at.button(key="models_load").click().run()
    assert not at.exception
    assert "empty" in at.error[0].value


@pytest.mark.slow
def test_models_page_loads_compares_and_releases():
    at = open_page()
    at.button(key="models_load").click().run()
    assert_clean(at)
    facts = at.dataframe[0].value
    assert list(facts.columns) == ["teacher: gemma3-270m", "student: smollm2-135m"]
    assert facts.loc["layers"].tolist() == ["18", "30"]
    assert facts.loc["hidden size"].tolist() == ["640", "576"]
    assert facts.loc["attention heads"].tolist() == ["4", "9"]
    assert facts.loc["adds BOS"].tolist() == ["True", "False"]
    assert facts.loc["padding side"].tolist() == ["left", "right"]
    assert facts.loc["attention"].tolist() == ["eager", "eager"]
    at.button(key="models_release").click().run()
    assert_clean(at)
    assert "Released" in at.success[0].value
    assert len(at.dataframe) == 0  # facts are only shown for a pair in memory
    at.button(key="models_load").click().run()  # and it loads again
    assert len(at.dataframe) == 1


# ----------------------------------------------------------------------------- Alignment page


def test_alignment_page_shows_the_library_statistics(teacher_tokenizer, student_tokenizer):
    at = open_page("alignment")
    assert_clean(at)
    text = at.text_area(key="shared_text").value
    expected = align_spans(text, teacher_tokenizer, student_tokenizer).stats()
    shown = metrics(at)
    assert shown["spans"] == str(expected["spans"])
    assert shown["teacher tokens"] == str(expected["teacher_tokens"])
    assert shown["student tokens"] == str(expected["student_tokens"])
    assert shown["one-to-one spans"] == f"{expected['one_to_one_share']:.1%}"
    assert len(at.dataframe[0].value) == expected["spans"]
    (diagram,) = charts(at)
    assert diagram["layout"]["title"]["text"] == "Span alignment"
    assert {b.label for b in at.get("download_button")} == {
        "Span table (CSV)",
        "Diagram (offline HTML)",
        "Diagram (PNG)",
        "Diagram (SVG)",
    }


def test_alignment_page_sample_and_word_level(teacher_tokenizer, student_tokenizer):
    at = open_page("alignment")
    at.selectbox(key="shared_sample").set_value("CJK").run()
    assert at.text_area(key="shared_text").value == SAMPLES["CJK"]
    fine = int(metrics(at)["spans"])
    assert fine == len(align_spans(SAMPLES["CJK"], teacher_tokenizer, student_tokenizer))
    at.toggle(key="align_word").set_value(True).run()
    assert_clean(at)
    coarse = int(metrics(at)["spans"])
    assert coarse == len(
        align_spans(SAMPLES["CJK"], teacher_tokenizer, student_tokenizer, granularity="word")
    )
    assert coarse <= fine


def test_alignment_page_compares_the_aligners_against_the_bytes(teacher_tokenizer, student_tokenizer):
    at = open_page("alignment")
    at.selectbox(key="shared_sample").set_value("Emoji").run()
    at.segmented_control(key="align_view").set_value("Aligners compared").run()
    assert_clean(at)
    expected = compare_aligners(align_spans(SAMPLES["Emoji"], teacher_tokenizer, student_tokenizer))
    table = at.dataframe[0].value.set_index("aligner")
    assert table.index.tolist() == [ALIGNER_TITLES[name] for name in ALIGNERS]
    for name in ALIGNERS:
        counts, row = expected.counts(name), table.loc[ALIGNER_TITLES[name]]
        assert (row["pairs"], row["wrong pairs"], row["bytes on one side only"]) == (
            counts.pairs,
            counts.wrong_pairs,
            counts.wrong_bytes,
        )
    assert table.loc["SRA spans", "wrong pairs"] == 0 and table.loc["ULD positions", "wrong pairs"] > 0
    (figure,) = charts(at)  # the span diagram and its table give way to the comparison
    assert figure["layout"]["title"]["text"] == "Aligners compared against the bytes"
    assert [b.label for b in at.get("download_button")] == ["Pairs of every aligner (CSV)"]
    assert at.query_params["view"] == "compare"
    opened = open_link("alignment", dict(at.query_params))  # a shared link opens the same view
    assert_clean(opened)
    assert opened.segmented_control(key="align_view").value == "Aligners compared"
    assert opened.dataframe[0].value.equals(at.dataframe[0].value)
    at.segmented_control(key="align_view").set_value("Spans").run()
    assert [c["layout"]["title"]["text"] for c in charts(at)] == ["Span alignment"]


def test_alignment_page_bad_text_is_an_error_not_a_traceback():
    at = open_page("alignment")
    at.text_area(key="shared_text").set_value("   \n ").run()
    assert not at.exception
    assert "text is empty" in at.error[0].value
    assert not at.get("plotly_chart")
    at.text_area(key="shared_text").set_value("word " * 2000).run()
    assert not at.exception
    assert "over the limit" in at.error[0].value and "10,000 characters" in at.error[0].value


def test_text_survives_a_page_switch():
    at = open_page("alignment")
    at.text_area(key="shared_text").set_value("Kept across pages: 東京.").run()
    at.switch_page(f"{PAGES}/models.py").run()
    at.switch_page(f"{PAGES}/alignment.py").run()
    assert at.text_area(key="shared_text").value == "Kept across pages: 東京."
    assert_clean(at)


def test_two_sessions_keep_their_own_text_and_results():
    first, second = open_page("alignment"), open_page("alignment")
    first.text_area(key="shared_text").set_value("One short text.").run()
    second.text_area(key="shared_text").set_value("Another, quite different and longer text for two.").run()
    first.run()
    assert first.text_area(key="shared_text").value == "One short text."
    assert metrics(first)["spans"] != metrics(second)["spans"]
    assert_clean(first)
    assert_clean(second)


# ----------------------------------------------------------------------------- Saliency page


@pytest.mark.slow
def test_saliency_page_draws_both_models():
    at = open_page("saliency")
    assert_clean(at)
    figs = charts(at)
    assert len(figs) == 3  # coloured text, attention heatmap, top spans
    table = at.dataframe[0].value
    assert np.isclose(table["saliency"].sum(), 1.0, atol=1e-4)
    assert (np.diff(table["saliency"].to_numpy()) <= 1e-12).all()  # sorted by saliency
    # one head of the student and uniform mass: recomputed, still a valid distribution
    at.selectbox(key="saliency_student_head").set_value(0).run()
    at.segmented_control(key="saliency_mode").set_value("uniform").run()
    assert_clean(at)
    uniform = at.dataframe[0].value
    assert np.isclose(uniform["saliency"].sum(), 1.0, atol=1e-4)
    assert not np.allclose(np.sort(uniform["teacher_mass"]), np.sort(table["teacher_mass"]))
    at.radio(key="saliency_side").set_value("student").run()
    assert_clean(at)
    heat = charts(at)[1]
    assert heat["layout"]["title"]["text"].startswith("student attention")


def test_saliency_corpus_tab_runs_on_request(tiny_pair_dirs):
    from sra_viz.corpus_saliency import ORDER

    at = open_tiny(tiny_pair_dirs, "saliency")
    assert_clean(at)
    before = len(charts(at))
    assert any("Analyse the sample texts" in i.value for i in at.info)  # nothing runs until asked
    at.button(key="saliency_corpus_run").click().run()
    assert_clean(at)
    figs = charts(at)
    assert len(figs) == before + 1
    assert figs[-1]["layout"]["title"]["text"] == "Where the teacher's last token looks, over the corpus"
    table = at.dataframe[-1].value
    assert table["axis"].unique().tolist() == ["script", "length", "position"]
    for axis, rows in table.groupby("axis"):
        assert rows["kind"].tolist() == ORDER[axis]
        assert np.isclose(rows["mass"].sum(), 1.0) and np.isclose(rows["spans"].sum(), 1.0)
    at.toggle(key="saliency_corpus_sinks").set_value(False).run()  # another option: asked for again
    assert_clean(at)
    assert len(charts(at)) == before and any("Analyse the sample texts" in i.value for i in at.info)


def test_saliency_colour_scale_head_and_windowed_controls(
    tiny_pair_dirs, teacher_tokenizer, student_tokenizer
):
    at = open_tiny(tiny_pair_dirs, "saliency")
    assert_clean(at)
    text_bars = [t for t in charts(at)[0]["data"] if t["type"] == "bar"]
    assert "saturate" in text_bars[1]["marker"]["colorbar"]["title"]["text"]  # sinks out of range by default
    at.segmented_control(key="saliency_scale").set_value("rank").run()
    text_bars = [t for t in charts(at)[0]["data"] if t["type"] == "bar"]
    assert (
        text_bars[0]["marker"]["cmax"] == 1.0
        and "rank" in text_bars[1]["marker"]["colorbar"]["title"]["text"]
    )
    # the page's head picker decides what the heatmap shows: no menu of its own that could contradict it
    at.selectbox(key="saliency_teacher_head").set_value(1).run()
    heat = charts(at)[1]
    assert [t["name"] for t in heat["data"]] == ["head 1"] and not heat["layout"].get("updatemenus")
    # a long text: cut, with the cure offered as a control, then covered whole by windows
    long = "The cat sat on the mat, and then it slept. " * 80  # about 900 tokens, 3,440 characters
    at.text_area(key="shared_text").set_value(long).run()
    assert_clean(at)
    (warning,) = [w.value for w in at.warning]
    assert "text truncated" in warning and "Windowed analysis" in warning and "windowed=True" not in warning
    cut = len(at.dataframe[0].value)
    at.toggle(key="saliency_windowed").set_value(True).run()
    assert_clean(at)
    assert not at.warning
    whole = len(align_spans(long, teacher_tokenizer, student_tokenizer))
    assert len(at.dataframe[0].value) == whole > cut
    assert any("Windowed analysis" in i.value for i in at.info)  # the heatmap needs one window


# ----------------------------------------------------------------------------- Geometry page


@pytest.mark.slow
def test_geometry_page_on_the_bundled_corpus():
    at = open_page("geometry")
    assert_clean(at)
    assert any("Compute span centers" in i.value for i in at.info)
    at.slider(key="geometry_n").set_value(3).run()
    at.button(key="geometry_run").click().run()
    assert_clean(at)
    shown = metrics(at)
    assert int(shown["spans"]) >= 3
    assert 0.0 <= float(shown["linear CKA"]) <= 1.0
    assert float(shown["Gram distance"]) >= 0.0 and float(shown["Gram distance (ŵ-weighted)"]) >= 0.0
    assert -1.0 <= float(shown["cosine (out-of-sample)"]) < 1.0
    assert 0.0 <= float(shown["retrieval@1 (out-of-sample)"]) <= 1.0
    # projector-free measures come first, and the page says the mapped ones are out of sample
    assert list(shown)[:4] == ["spans", "linear CKA", "Gram distance", "Gram distance (ŵ-weighted)"]
    assert any("fitted on the other half of the texts" in i.value for i in at.info)
    assert any("out-of-sample" in i.value for i in at.info)
    figs = charts(at)
    assert len(figs) == 2  # PCA scatter and one text's Gram matrices (UMAP only on request)
    assert "PCA" in figs[0]["layout"]["title"]["text"]
    # a rerun keeps the result
    at.radio(key="geometry_color").set_value("saliency").run()
    assert metrics(at) == shown


@pytest.mark.slow
def test_geometry_page_upload_good_and_bad(tmp_path):
    at = open_page("geometry")
    at.radio(key="geometry_source").set_value("Uploaded file").run()
    at.button(key="geometry_run").click().run()
    assert "no file uploaded" in at.error[0].value
    at.file_uploader(key="geometry_upload").set_value(
        ("broken.jsonl", b'{"prompt": "x"\n{{{', "application/json")
    )
    at.run()
    at.button(key="geometry_run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "broken.jsonl" in at.error[0].value
    rows = [
        {"prompt": "Name a colour.", "response": f"The sky is blue on day {i}, and grass is green."}
        for i in range(3)
    ]
    good = "\n".join(json.dumps(r) for r in rows).encode()
    at.file_uploader(key="geometry_upload").set_value(("good.jsonl", good, "application/json"))
    at.run()
    at.button(key="geometry_run").click().run()
    assert_clean(at)
    assert any("Uploaded file · 3 texts" in c.value for c in at.caption)
    assert int(metrics(at)["spans"]) >= 3


@pytest.mark.slow
def test_geometry_page_umap_on_request():
    at = open_page("geometry")
    at.radio(key="geometry_source").set_value("Pasted texts").run()
    at.slider(key="geometry_n").set_value(4).run()
    at.button(key="geometry_run").click().run()
    assert_clean(at)
    assert len(charts(at)) == 2
    at.button(key="geometry_umap").click().run()
    assert_clean(at)
    titles = [f["layout"]["title"]["text"] for f in charts(at)]
    assert any("UMAP" in t for t in titles) and any("PCA" in t for t in titles)


# ----------------------------------------------------------------------------- views shared by URL


def open_link(page: str, query: dict[str, str]) -> AppTest:
    """A fresh session opened on ``page`` with ``query`` as its URL's query string (a shared link)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.query_params.update(query)
    at.switch_page(f"{PAGES}/{page}.py").run()
    return at


def shared_link(at: AppTest) -> str:
    (box,) = [c.value for c in at.code if "?" in c.value]
    return box


def test_alignment_view_round_trips_through_the_url():
    at = open_page("alignment")
    text = "Shared by link: 東京 & naïve café, 50% off?"
    at.text_area(key="shared_text").set_value(text).run()
    at.toggle(key="align_word").set_value(True).run()
    assert_clean(at)
    query = dict(at.query_params)
    assert query["text"] == text and query["word"] == "1"
    assert query["teacher"] == "gemma3-270m" and query["student"] == "smollm2-135m"
    assert shared_link(at).startswith("/alignment?text=Shared%20by%20link%3A%20")
    opened = open_link("alignment", query)
    assert_clean(opened)
    assert opened.text_area(key="shared_text").value == text
    assert opened.toggle(key="align_word").value is True
    assert metrics(opened) == metrics(at)
    assert shared_link(opened) == shared_link(at)
    # the user's later edits win over the link they opened, and the URL follows them
    opened.toggle(key="align_word").set_value(False).run()
    assert opened.toggle(key="align_word").value is False and opened.query_params["word"] == "0"


def test_a_bad_link_is_one_line_per_parameter_and_the_page_still_works():
    opened = open_link("alignment", {"text": "Fine text.", "word": "maybe", "colour": "red"})
    assert not opened.exception
    problems = [e.value for e in opened.error]
    assert len(problems) == 2, problems
    assert any("word='maybe' is not yes/no: use 1 or 0" in p for p in problems)
    assert any("'colour' is not known on this page" in p and "text, word" in p for p in problems)
    assert opened.text_area(key="shared_text").value == "Fine text."  # the good parameter is applied
    assert opened.toggle(key="align_word").value is False
    assert int(metrics(opened)["spans"]) > 0


def test_geometry_options_round_trip_through_the_url():
    at = open_page("geometry")
    at.radio(key="geometry_source").set_value("Pasted texts").run()
    at.text_area(key="geometry_pasted").set_value("First text.\n\nSecond text.").run()
    at.slider(key="geometry_n").set_value(5).run()
    at.selectbox(key="geometry_mode").set_value("uniform").run()
    at.toggle(key="geometry_responses").set_value(False).run()
    assert_clean(at)
    query = dict(at.query_params)
    assert query == {
        "source": "Pasted texts",
        "texts": "First text.\n\nSecond text.",
        "n": "5",
        "mode": "uniform",
        "responses": "0",
        "teacher": "gemma3-270m",
        "student": "smollm2-135m",
    }
    opened = open_link("geometry", query)
    assert_clean(opened)
    assert opened.radio(key="geometry_source").value == "Pasted texts"
    assert opened.text_area(key="geometry_pasted").value == "First text.\n\nSecond text."
    assert opened.slider(key="geometry_n").value == 5
    assert opened.selectbox(key="geometry_mode").value == "uniform"
    assert opened.toggle(key="geometry_responses").value is False
    out_of_range = open_link("geometry", {"n": "500", "source": "Bundled corpus"})
    assert not out_of_range.exception
    assert [e.value for e in out_of_range.error] == [
        "link parameter n='500' is not allowed: use one of 2 to 64; the page keeps its own value"
    ]
    assert out_of_range.slider(key="geometry_n").value == 12
    assert "texts" not in out_of_range.query_params  # pasted texts travel only with that source


def test_saliency_view_and_pair_round_trip_through_the_url(tiny_pair_dirs):
    teacher_dir, student_dir = tiny_pair_dirs
    at = open_page("saliency", teacher_spec=str(teacher_dir), student_spec=str(student_dir))
    at.text_area(key="shared_text").set_value("The cat sat on the mat.").run()
    at.segmented_control(key="saliency_mode").set_value("received").run()
    at.selectbox(key="saliency_student_head").set_value(1).run()
    at.radio(key="saliency_side").set_value("student").run()
    assert_clean(at)
    query = dict(at.query_params)
    assert query["teacher"] == str(teacher_dir) and query["student"] == str(student_dir)
    assert (query["mode"], query["student_head"], query["teacher_head"], query["side"]) == (
        "received",
        "1",
        "all",
        "student",
    )
    opened = open_link("saliency", query)  # a fresh session: the pair comes from the link too
    assert_clean(opened)
    assert opened.session_state["teacher_spec"] == str(teacher_dir)
    assert opened.segmented_control(key="saliency_mode").value == "received"
    assert opened.selectbox(key="saliency_student_head").value == 1
    assert opened.radio(key="saliency_side").value == "student"
    assert opened.dataframe[0].value.equals(at.dataframe[0].value)


# ----------------------------------------------------------------------------- Distill page


def _poll(condition, seconds: float, what: str) -> None:
    """Wait until ``condition()`` holds, checking twice a second, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {seconds:.0f} s"
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def _no_run_left_behind():
    """Stop any run a test leaves going (a failed test must not leave a training thread behind)."""
    yield
    from sra_viz.ui.worker import active_workers

    for worker in active_workers():
        worker.stop()
        worker.join(600)


def _watched(at: AppTest):
    """The worker of the run this app session watches (from the process-level registry)."""
    from sra_viz.ui.worker import worker_for

    return worker_for(at.session_state["distill_run"])


def _wait_until_done(at: AppTest, seconds: float = 900):
    """Poll the worker (bounded) until its run has ended, then redraw the page once from that final
    state: the page and the returned progress describe the same moment (drawing first and asking the
    worker after would race with the worker's last update)."""
    worker = _watched(at)
    deadline = time.monotonic() + seconds
    while worker.progress().active:
        assert time.monotonic() < deadline, f"the run is still {worker.progress().status} after {seconds} s"
        at.run()  # the fragment's redraw, as the browser's timer would trigger it
        time.sleep(1.0)
    at.run()
    return worker.progress()


def _small_run(at: AppTest, runs: Path, steps: int = 2, k: int = 2, probe_every: int = 1) -> None:
    at.text_input(key="distill_runs_root").set_value(str(runs))
    at.number_input(key="distill.steps").set_value(steps)
    at.number_input(key="distill.batch_size").set_value(2)
    at.number_input(key="distill.max_length").set_value(48)
    at.number_input(key="distill.probe_size").set_value(4)
    at.number_input(key="distill.log_every").set_value(probe_every)
    at.slider(key="distill.student_k").set_value(k)
    at.selectbox(key="distill.student_variant").set_value("truncated")
    at.number_input(key="distill.eval_size").set_value(2)  # the held-out evaluation, kept short
    at.number_input(key="distill.eval_max_new_tokens").set_value(8)


def open_tiny(tiny_pair_dirs, page: str = "distill") -> AppTest:
    """An app session whose selected pair is the tiny seeded pair (its folders as model specs)."""
    teacher_dir, student_dir = tiny_pair_dirs
    return open_page(page, teacher_spec=str(teacher_dir), student_spec=str(student_dir))


def test_distill_widget_keys_are_config_fields(tiny_pair_dirs, tmp_path):
    """Every config widget's key is a DistillConfig field, and what it shows is what the run is given."""
    from dataclasses import fields

    from sra_viz.distill import DistillConfig

    at = open_tiny(tiny_pair_dirs)
    assert_clean(at)
    names = {f.name for f in fields(DistillConfig)}
    keys = {str(k).removeprefix("distill.") for k in at.session_state if str(k).startswith("distill.")}
    assert {"method", "steps", "batch_size", "lr", "log_every", "use_geo", "lambda_geo", "seed"} <= keys
    assert keys <= names, keys - names
    _small_run(at, tmp_path, steps=2, k=1)
    at.number_input(key="distill.lambda_geo").set_value(3.0)
    at.number_input(key="distill.seed").set_value(7)
    at.select_slider(key="distill.lr").set_value(3e-4)
    at.toggle(key="distill.use_geo").set_value(False).run()
    shown = {k: at.session_state["distill." + k] for k in keys}
    at.button(key="distill_start").click().run()
    assert_clean(at)
    progress = _wait_until_done(at, 300)
    assert progress.status == "finished", progress.error
    written = json.loads((Path(progress.run_dir) / "config.json").read_text())
    assert {k: written[k] for k in keys} == shown
    at.run()  # the finished run's panel says how much of its teacher side the teacher cache held
    assert any(c.value.startswith("Used the teacher cache: the teacher side of ") for c in at.caption)
    assert (written["lambda_geo"], written["seed"], written["lr"], written["use_geo"]) == (
        3.0,
        7,
        3e-4,
        False,
    )


@pytest.mark.parametrize("typed", ["", "  "])
def test_distill_empty_runs_folder_is_the_cache_runs(tiny_pair_dirs, tmp_path, monkeypatch, typed):
    monkeypatch.setenv("SRA_VIZ_HOME", str(tmp_path / "home"))
    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, steps=1, k=1)
    at.text_input(key="distill_runs_root").set_value(typed)
    at.button(key="distill_start").click().run()
    assert_clean(at)
    progress = _wait_until_done(at, 300)
    assert progress.status == "finished", progress.error
    assert Path(progress.run_dir).parent == (tmp_path / "home" / "runs").resolve()
    assert not (Path.cwd() / Path(progress.run_dir).name).exists()


def test_distill_bad_runs_folder_is_one_line(tiny_pair_dirs, tmp_path):
    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, steps=1, k=1)
    at.text_input(key="distill_runs_root").set_value("/proc/nope/runs")
    at.button(key="distill_start").click().run()
    assert not at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "runs folder '/proc/nope/runs' cannot be created" in at.error[0].value
    assert "Traceback" not in at.error[0].value and "FileNotFoundError" not in at.error[0].value
    assert "distill_run" not in at.session_state


def test_distill_run_is_found_by_a_second_session(tiny_pair_dirs, tmp_path):
    first = open_tiny(tiny_pair_dirs)
    _small_run(first, tmp_path, steps=40, k=1, probe_every=40)
    first.button(key="distill_start").click().run()
    assert_clean(first)
    run_dir = first.session_state["distill_run"]
    # a reload is a new session with empty state: it finds the running run, Start off and Stop on
    second = open_tiny(tiny_pair_dirs)
    assert second.session_state["distill_run"] == run_dir
    assert _watched(second).progress().active
    assert second.button(key="distill_start").disabled and not second.button(key="distill_stop").disabled
    assert any(m.value.startswith("**Run ") and run_dir in m.value for m in second.markdown)
    # the second session cannot start a second writer on the same run folder
    from sra_viz.errors import SraVizError
    from sra_viz.ui.worker import launch

    with pytest.raises(SraVizError, match="already running in this app"):
        launch(run_dir, lambda say: None)
    _poll(lambda: (Path(run_dir) / "config.json").is_file(), 300, "the run folder")  # written when set up
    second.text_input(key="distill_runs_root").set_value(str(tmp_path)).run()
    assert_clean(second)
    second.selectbox(key="distill_reopen").set_value(Path(run_dir).name).run()
    assert second.button(key="distill_resume_past").disabled
    past = second.dataframe[-1].value
    assert past.loc[past["run"] == Path(run_dir).name, "state"].item() == "running"
    # Stop from the second session ends the run the first one started
    second.button(key="distill_stop").click().run()
    progress = _wait_until_done(second, 300)
    assert progress.status == "stopped", progress.error
    first.run()
    assert any(f"Run stopped at step {progress.steps_done}" in w.value for w in first.warning)
    past = first.dataframe[-1].value
    assert past.loc[past["run"] == Path(run_dir).name, "state"].item() == "stopped"


def test_distill_stop_while_preparing_says_nothing_was_saved(tiny_pair_dirs, tmp_path):
    import threading

    import sra_viz.ui.pages.distill  # noqa: F401

    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, steps=5, k=1)
    # hold the session's set-up until Stop has been pressed, as a slow model set-up would
    from sra_viz.distill import session as session_module

    gate = threading.Event()
    original = session_module.DistillSession._open_run_dir

    def slow_open(self):
        gate.wait(60)
        original(self)

    session_module.DistillSession._open_run_dir = slow_open
    try:
        at.button(key="distill_start").click().run()
        assert _watched(at).progress().status == "preparing"
        at.button(key="distill_stop").click().run()
        gate.set()
        progress = _wait_until_done(at, 300)
    finally:
        session_module.DistillSession._open_run_dir = original
    assert progress.status == "stopped" and progress.steps_done == 0 and not progress.saved
    warnings = [w.value for w in at.warning]
    assert any("stopped while preparing" in w and "nothing was saved" in w for w in warnings), warnings
    assert not any("checkpoint is saved" in w for w in warnings)
    assert at.button(key="distill_resume").disabled
    from sra_viz.distill.runs import read_status

    status = read_status(progress.run_dir)
    assert status["state"] == "stopped" and "nothing saved" in status["message"]
    past = at.dataframe[-1].value
    assert past.loc[past["run"] == Path(progress.run_dir).name, "state"].item() == "stopped"


def test_finished_runs_release_their_memory(tiny_pair_dirs, tmp_path):
    """Server RSS after 5 consecutive short runs stays within 1.5x of RSS after the first. Each run holds
    what every run holds (a student copy, its optimizer, batches, the held-out evaluation) with one step
    of a 1-block student: what a finished run keeps, it keeps whatever its length."""
    import gc

    from sra_viz.ui.state import process_memory

    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, steps=1, k=1)
    sizes = []
    for _ in range(5):
        at.button(key="distill_start").click().run()
        progress = _wait_until_done(at, 300)
        assert progress.status == "finished", progress.error
        assert _watched(at).session is None  # the student copy, optimizer and batches are let go
        gc.collect()
        sizes.append(process_memory())
    print("RSS after each run (MB):", [round(s / 2**20) for s in sizes])
    assert sizes[-1] <= 1.5 * sizes[0], sizes


def test_models_are_cached_by_resolved_identity(tiny_pair_dirs):
    import os

    from sra_viz.ui.state import get_model, is_loaded, model_identity

    _, student_dir = tiny_pair_dirs
    relative = os.path.relpath(student_dir)
    assert model_identity(relative) == model_identity(str(student_dir))
    assert get_model(str(student_dir)) is get_model(relative if relative.startswith(".") else "./" + relative)
    assert is_loaded(str(student_dir))


@pytest.mark.slow
def test_distill_page_runs_two_steps_with_a_truncated_student(tmp_path):
    from sra_viz.ui.state import get_model

    shared = get_model("smollm2-135m").model  # the process-wide cached student every session reads
    before = {n: p.detach().clone() for n, p in shared.named_parameters() if ".layers.0." in n}
    at = open_page("distill")
    assert_clean(at)
    assert [b.label for b in at.button][:3] == ["Start", "Stop", "Resume"]
    _small_run(at, tmp_path)
    assert at.number_input(key="distill.lambda_geo").value == 50.0  # the library's default, shown
    at.number_input(key="distill.lambda_geo").set_value(3.0)  # the published loss scales
    at.selectbox(key="distill.kd_weighting").set_value("sum")
    at.button(key="distill_start").click().run()
    assert_clean(at)
    assert at.button(key="distill_start").disabled and not at.button(key="distill_stop").disabled
    progress = _wait_until_done(at)
    assert progress.status == "finished", progress.error
    assert progress.steps_done == 2
    assert_clean(at)
    shown = metrics(at)
    assert shown["Steps done"] == "2 / 2"
    assert np.isfinite(float(shown["loss"])) and 0 <= float(shown["probe CKA"]) <= 1
    assert any(m.value.startswith("**Run finished**") for m in at.markdown)
    titles = [f["layout"]["title"]["text"] for f in charts(at)]
    assert "Convergence" in titles and any("Span geometry over training" in t for t in titles)
    assert any(t.startswith("Distance of each span to its teacher span") for t in titles)
    assert any(t.startswith("Gram difference") for t in titles)
    assert any(t.startswith("Per-span displacement") for t in titles)
    # the run directory holds what the engine wrote; the past-runs table lists it
    run_dir = Path(progress.run_dir)
    assert run_dir.parent == tmp_path.resolve()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    written = json.loads((run_dir / "config.json").read_text())
    assert (written["lambda_geo"], written["kd_weighting"], written["alpha"]) == (3.0, "sum", 0.5)
    assert written["snapshot_every"] == written["log_every"] == 1
    past = at.dataframe[-1].value
    assert (
        run_dir.name in list(past["run"])
        and past.loc[past["run"] == run_dir.name, "state"].item() == "finished"
    )
    assert not at.button(key="distill_start").disabled
    # the shared student was not trained: the engine trained its own copy
    after = dict(shared.named_parameters())
    assert all(np.array_equal(before[n].numpy(), after[n].detach().numpy()) for n in before)


@pytest.mark.slow
def test_distill_page_stop_and_resume(tmp_path):
    at = open_page("distill")
    # Enough steps that the Stop click (one AppTest rerun) lands before the run could finish by itself.
    _small_run(at, tmp_path, steps=12, probe_every=12)
    at.button(key="distill_start").click().run()
    deadline = time.monotonic() + 900
    while _watched(at).progress().steps_done < 1:
        assert time.monotonic() < deadline
        time.sleep(1.0)
    at.button(key="distill_stop").click().run()
    progress = _wait_until_done(at)
    # the stop lands while step 2 runs: the run ends between steps, with a checkpoint
    assert progress.status == "stopped", progress.error
    assert 1 <= progress.steps_done < 12
    assert any(f"Run stopped at step {progress.steps_done}" in w.value for w in at.warning)
    assert (Path(progress.run_dir) / "checkpoint").is_dir()
    assert not at.button(key="distill_resume").disabled
    at.button(key="distill_resume").click().run()
    progress = _wait_until_done(at)
    assert progress.status == "finished" and progress.steps_done == 12
    assert_clean(at)


def test_distill_page_bad_configurations_are_errors(tiny_pair_dirs, tmp_path):
    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, k=1)
    for name in ("use_span", "use_geo", "use_kd", "use_ce"):
        at.toggle(key=f"distill.{name}").set_value(False)
    at.button(key="distill_start").click().run()
    assert not at.exception
    assert "every SRA loss term is switched off" in at.error[0].value
    assert "distill_run" not in at.session_state
    at.toggle(key="distill.use_ce").set_value(True)
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    at.text_input(key="distill_runs_root").set_value(str(not_a_folder))
    at.button(key="distill_start").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "is a file" in at.error[0].value and "file.txt" in at.error[0].value
    assert "distill_run" not in at.session_state


# ----------------------------------------------------------------------------- Distill page: did it help?

EVAL_TITLE = "Did it help? Held-out evaluation"
COMPARE_TITLE = "Runs compared on held-out data"
MEASURES = ("rouge_l", "teacher_agreement", "vcap_kl", "heldout_loss")  # subplot order: x, x2, x3, x4


@pytest.fixture(scope="module")
def heldout_runs(tiny_sra_run, tiny_pair, tiny_pair_dirs, tmp_path_factory):
    """A folder of finished 2-step tiny-pair runs: the shared SRA run (seed 0, tests/conftest.py), a
    CE-only run made by the engine (seed 1) and a copy of the SRA run whose evaluation files hold no
    generations, as runs made before they were kept: (folder, {name: run dir}, the SRA session)."""
    import shutil

    from sra_viz.distill import DistillSession
    from tests._configs import HELDOUT_RUN, small_config

    sra_run, sra_session = tiny_sra_run
    root = tmp_path_factory.mktemp("heldout_runs")
    shutil.copytree(sra_run, root / "sra-run")
    config = small_config(root / "ce-run", HELDOUT_RUN, pair_dirs=tiny_pair_dirs, method="ce", seed=1)
    assert DistillSession(config, pair=tiny_pair).run() == "finished"
    old = root / "old-run"
    shutil.copytree(sra_run, old)
    for path in (old / "evaluation").glob("*.json"):
        data = json.loads(path.read_text())
        data.pop("examples")
        path.write_text(json.dumps(data))
    return root, {"sra-run": root / "sra-run", "ce-run": root / "ce-run", "old-run": old}, sra_session


def _bars(spec: dict) -> dict[str, dict[str, float | None]]:
    """measure -> {bar label: value} of a held-out figure's JSON spec."""
    axes = {("x" if i == 0 else f"x{i + 1}"): m for i, m in enumerate(MEASURES)}
    out: dict[str, dict[str, float | None]] = {m: {} for m in MEASURES}
    for trace in spec["data"]:
        if trace["type"] == "bar":
            out[axes[trace.get("xaxis", "x")]][trace["x"][0]] = trace["y"][0]
    return out


def _titled(at: AppTest, title: str) -> list[dict]:
    return [c for c in charts(at) if c["layout"].get("title", {}).get("text") == title]


def _reopen(at: AppTest, root: Path, name: str) -> None:
    at.text_input(key="distill_runs_root").set_value(str(root)).run()
    at.selectbox(key="distill_reopen").set_value(name).run()


def test_distill_past_run_shows_heldout_before_after_generations_and_comparison(tiny_pair_dirs, heldout_runs):
    from sra_viz.evaluation import load_run_evaluations

    root, runs, _ = heldout_runs
    at = open_tiny(tiny_pair_dirs)
    _reopen(at, root, "sra-run")
    assert_clean(at)
    evals = load_run_evaluations(runs["sra-run"])
    # before/after: every measure of the teacher, the student at step 0 and at step 2, as saved
    (figure,) = _titled(at, EVAL_TITLE)
    bars = _bars(figure)
    for m in MEASURES:
        assert bars[m] == {
            "teacher": getattr(evals.teacher, m),
            "student before (step 0)": pytest.approx(getattr(evals.before, m)),
            "student after (step 2)": pytest.approx(getattr(evals.after, m)),
        }
    assert bars["teacher_agreement"]["teacher"] is None and bars["rouge_l"]["teacher"] is not None
    # the generations side by side: the first held-out prompt's reference and three generations
    shown = [t.value for t in at.text]
    first = {
        name: r.examples[0] for name, r in (("t", evals.teacher), ("b", evals.before), ("a", evals.after))
    }
    assert first["t"]["prompt"] in shown and first["t"]["reference"] in shown
    for example in first.values():
        assert (example["generation"] or "(empty)") in shown
    assert at.selectbox(key="distill_reopen_prompt").options[0].startswith(first["t"]["id"])
    second = evals.after.examples[1]
    at.selectbox(key="distill_reopen_prompt").select_index(1).run()
    assert second["reference"] in [t.value for t in at.text]
    # runs compared: each run's last evaluation, the teacher first, every run that was evaluated
    (compared,) = _titled(at, COMPARE_TITLE)
    bars = _bars(compared)
    ce = load_run_evaluations(runs["ce-run"]).after
    assert bars["rouge_l"]["teacher"] == evals.teacher.rouge_l
    assert bars["vcap_kl"]["sra · seed 0 · sra-run"] == pytest.approx(evals.after.vcap_kl)
    assert bars["heldout_loss"]["ce · seed 1 · ce-run"] == pytest.approx(ce.heldout_loss)
    assert set(bars["heldout_loss"]) == {
        "teacher",
        "sra · seed 0 · sra-run",
        "ce · seed 1 · ce-run",
        "sra · seed 0 · old-run",
    }
    # a run whose files kept no generations: its figures, and one line saying the generations were not kept
    at.selectbox(key="distill_reopen").set_value("old-run").run()
    assert_clean(at)
    assert len(_titled(at, EVAL_TITLE)) == 1
    assert sum("did not keep the generations" in c.value for c in at.caption) == 1


def test_distill_broken_evaluation_file_is_one_line(tiny_pair_dirs, heldout_runs, tmp_path):
    import shutil

    _, runs, _ = heldout_runs
    broken = tmp_path / "runs" / "broken-run"
    shutil.copytree(runs["sra-run"], broken)
    (broken / "evaluation" / "step_000002.json").write_text('{"model": "student", "n": 2, ')  # torn
    at = open_tiny(tiny_pair_dirs)
    _reopen(at, tmp_path / "runs", "broken-run")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors  # the comparison and the reopened run's views, one line each
    assert all("step_000002.json' cannot be read" in e and "remove it" in e for e in errors), errors
    assert not _titled(at, EVAL_TITLE) and at.button(key="distill_export") is not None  # the rest is drawn


def test_distill_export_button_writes_a_loadable_folder(tiny_pair_dirs, heldout_runs, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    root, runs, session = heldout_runs
    at = open_tiny(tiny_pair_dirs)
    _reopen(at, root, "sra-run")
    folder = at.text_input(key="distill_export_dir:sra-run")
    assert folder.value == str(runs["sra-run"] / "export")  # the default: beside the run's own files
    assert not at.button(key="distill_export").disabled
    out = tmp_path / "student"
    folder.set_value(str(out)).run()
    at.button(key="distill_export").click().run()
    assert_clean(at)
    assert any(str(out.resolve()) in s.value for s in at.success)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 504, 3458, 314, 253, 1789, 30]])
    session.student.model.eval()
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids).logits, session.student.model(input_ids=ids).logits, atol=1e-5
        )
    # a non-empty folder: one line, refused, nothing replaced; with "replace" ticked it is replaced
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    at.button(key="distill_export").click().run()
    assert not at.exception and len(at.error) == 1
    assert "exists and is not empty" in at.error[0].value and "tick **replace**" in at.error[0].value
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    at.checkbox(key="distill_export_replace:sra-run").check().run()
    at.button(key="distill_export").click().run()
    assert_clean(at)
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp
    # the run folder itself (or one of its files) is never an export target, even with "replace"
    at.text_input(key="distill_export_dir:sra-run").set_value(str(runs["sra-run"] / "checkpoint")).run()
    at.button(key="distill_export").click().run()
    assert not at.exception and len(at.error) == 1 and "would overwrite the run" in at.error[0].value
    assert (runs["sra-run"] / "checkpoint" / "student.safetensors").is_file()


def test_distill_live_run_shows_its_heldout_evaluation(tiny_pair_dirs, tmp_path):
    from sra_viz.evaluation import load_run_evaluations

    at = open_tiny(tiny_pair_dirs)
    _small_run(at, tmp_path, steps=1, k=1)
    at.button(key="distill_start").click().run()
    progress = _wait_until_done(at, 300)
    assert progress.status == "finished", progress.error
    assert_clean(at)
    evals = load_run_evaluations(progress.run_dir)
    live = [c for c in at.get("plotly_chart") if "distill_live_heldout" in c.proto.id]
    assert len(live) == 1
    bars = _bars(json.loads(live[0].proto.spec))
    assert bars["teacher_agreement"]["student after (step 1)"] == pytest.approx(evals.after.teacher_agreement)
    assert bars["rouge_l"]["student before (step 0)"] == pytest.approx(evals.before.rouge_l)


# ----------------------------------------------------------------------------- Learn page


def test_learn_page_paper_step_needs_no_model():
    at = open_page("learn", learn_step="What the paper reports")
    assert_clean(at)
    results, ablation, cost = (d.value for d in at.dataframe)
    assert results.loc[results["student"] == "GPT2-120M", "SRA"].item() == 17.97
    assert ablation.loc[ablation["average ROUGE-L"].idxmax()].iloc[0] == "full SRA"
    assert ablation["average ROUGE-L"].min() == 14.85
    assert cost.loc[cost["seconds per step"].idxmin(), "method"] == "SRA"
    assert at.button(key="learn_next").disabled


@pytest.mark.slow
def test_learn_tour_every_step_on_the_live_models():
    at = open_page("learn")
    seen = []
    while True:
        assert_clean(at)
        step = at.segmented_control(key="learn_step").value
        seen.append(step)
        if step != "What the paper reports":
            assert charts(at) or at.dataframe, f"step {step!r} shows no figure or table"
        if at.button(key="learn_next").disabled:
            break
        at.button(key="learn_next").click().run()
    assert len(seen) == 7 and seen[0] == "Token alignment is brittle"
    at.session_state["learn_step"] = "Geometric regularizer"
    at.run()
    shown = metrics(at)
    assert 0.0 <= float(shown["linear CKA"]) <= 1.0
    assert float(shown["Gram distance (saliency-weighted)"]) >= 0.0


def test_runs_of_different_methods_are_not_overlaid_on_one_total_loss(tiny_pair_dirs, heldout_runs):
    """SRA's and CE-only's total losses are different objectives: overlaid, they leave the loss panel out."""
    root, _, _ = heldout_runs
    at = open_tiny(tiny_pair_dirs)
    at.text_input(key="distill_runs_root").set_value(str(root)).run()
    at.multiselect(key="distill_compare").set_value(["sra-run", "ce-run"]).run()
    assert_clean(at)
    assert any("total loss is left out" in c.value for c in at.caption)
    (chart,) = _titled(at, "Runs compared")
    panels = [a["text"] for a in chart["layout"].get("annotations", [])]
    assert "L_CE (next token)" in panels and "total loss L" not in panels
    at.multiselect(key="distill_compare").set_value(["sra-run", "old-run"]).run()  # one method: kept
    (chart,) = _titled(at, "Runs compared")
    assert "total loss L" in [a["text"] for a in chart["layout"].get("annotations", [])]


def test_progress_counts_only_the_steps_whose_rows_are_logged():
    """A step's count goes up before its row (and its probe) is logged: the page must not say "step 1"
    next to no loss, so the progress reports the steps on record."""
    from sra_viz.ui.worker import steps_on_record

    assert steps_on_record(1, [{"step": 0, "probe_cka": 0.4}]) == 0  # step 1 updated, its row not yet logged
    assert steps_on_record(1, [{"step": 0}, {"step": 1, "loss": 2.0}]) == 1
    assert steps_on_record(7, [{"step": 5, "loss": 1.0}, {"step": 7, "loss": 0.9}]) == 7  # a resumed run
    assert steps_on_record(0, []) == 0 and steps_on_record(3, []) == 3  # no rows read yet
