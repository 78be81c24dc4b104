"""Figure builders on real data from the default pair, token labels, and offline export.

Run: ``.venv/bin/python -m pytest tests/test_figures.py -q`` (``-m "not slow"`` skips the real models).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from sra_viz import export, geometry, projection
from sra_viz import figures as F
from sra_viz.errors import SraVizError
from sra_viz.figures.style import visible_bytes, visible_text

TEXT = "Hello  world!\n\tdef f(x):\n    return x**2  # 東京 café 🎉 naïve\u00a0end"


def _rects(trace) -> list[tuple[float, float, float, float]]:
    """(x0, x1, y_low, y_high) of each None-separated rectangle of a fill trace."""
    xs, ys = list(trace.x), list(trace.y)
    out = []
    for i in range(0, len(xs), 6):
        x, y = xs[i : i + 4], ys[i : i + 4]
        out.append((min(x), max(x), min(y), max(y)))
    return out


def _trace(fig: go.Figure, name: str):
    (found,) = [t for t in fig.data if t.name == name]
    return found


# ---------------------------------------------------------------- labels (no models)


def test_visible_labels_show_whitespace_and_byte_pieces():
    assert visible_text(" a\n\tb\u00a0\u200b") == "␣a↵→b⍽⟨ZWSP⟩"
    assert visible_bytes("東".encode()) == "東"
    assert visible_bytes("東".encode()[:1]) == "<E6>"
    assert visible_bytes(b" " + "🎉".encode()[:2]) == "␣<F0><9F>"
    assert visible_bytes("🎉".encode()[2:] + b"x") == "<8E><89>x"


def test_token_side_rejects_ragged_input():
    with pytest.raises(SraVizError, match="equal-length"):
        F.token_labels({"ids": [1, 2], "tokens": ["a"], "byte_spans": [None, None]})


# ---------------------------------------------------------------- alignment diagram


def test_alignment_diagram_real_tokenizers_bands_contain_their_tokens(teacher_tokenizer, student_tokenizer):
    from sra_viz.alignment import align_spans

    al = align_spans(TEXT, teacher_tokenizer, student_tokenizer)
    fig = F.alignment_figure(al)
    names = [t.name for t in fig.data]
    assert {
        "teacher tokens",
        "teacher special",
        "student tokens",
        "teacher labels",
        "student labels",
        "span",
    } <= set(names)
    t_lab, s_lab = _trace(fig, "teacher labels"), _trace(fig, "student labels")
    assert list(t_lab.customdata) == list(range(len(al.teacher.ids)))
    assert list(s_lab.customdata) == list(range(len(al.student.ids)))
    assert len(_trace(fig, "span").x) == len(al.spans)
    # labels: <bos> escaped, whitespace visible, byte pieces of 東 on the byte-level student as hex
    assert t_lab.text[0] == "&lt;bos&gt;"
    assert "␣␣" in t_lab.text and "→" in s_lab.text
    assert any(lab.startswith("␣&lt;E6&gt;") for lab in s_lab.text)
    # every token of span k sits inside band k, on the same line
    bands = {0: _rects(_trace(fig, "spans (even)")), 1: _rects(_trace(fig, "spans (odd)"))}
    for k, sp in enumerate(al.spans):
        x0, x1, y_low, y_high = bands[k % 2][k // 2]
        for lab, lo, hi in (
            (t_lab, sp.teacher_start, sp.teacher_end),
            (s_lab, sp.student_start, sp.student_end),
        ):
            for i in range(lo, hi):
                assert x0 <= lab.x[i] <= x1 and y_low <= lab.y[i] <= y_high, (k, i)
                assert f"span {k}:" in lab.hovertext[i]
    # hover carries id and bytes of the token
    i = next(i for i, t in enumerate(al.teacher.tokens) if "東" in t)
    assert f"id {al.teacher.ids[i]}" in t_lab.hovertext[i] and "E6 9D B1" in t_lab.hovertext[i]


def test_alignment_diagram_wraps_long_texts(teacher_tokenizer, student_tokenizer):
    from sra_viz.alignment import align_spans

    long_text = " ".join([TEXT] * 12)  # a few hundred tokens
    al = align_spans(long_text, teacher_tokenizer, student_tokenizer)
    assert len(al.student.ids) > 250
    fig = F.alignment_figure(al, width=900)
    t_lab = _trace(fig, "teacher labels")
    lines = sorted(set(np.round(t_lab.y, 6)))
    assert len(lines) > 5
    assert fig.layout.width == 900 and fig.layout.height > 5 * 60
    x_max = fig.layout.xaxis.range[1]
    assert max(t_lab.x) < x_max and max(_trace(fig, "student labels").x) < x_max
    # reading order is kept: token i+1 is right of token i on its line, or on a later line
    points = list(zip(t_lab.y, t_lab.x, strict=True))
    for a, b in zip(points[:-1], points[1:], strict=True):
        assert b[0] < a[0] - 1e-9 or (abs(b[0] - a[0]) < 1e-9 and b[1] > a[1])


# ---------------------------------------------------------------- saliency colours (no models)

SKEWED = np.array([0.62, 0.03, 0.01, 0.05, 0.02, 0.27])  # first and last span hold 89 % (sinks)


def test_mass_colours_linear_range_leaves_the_sinks_out():
    (values,), lo, hi, title = F.saliency.mass_colours([SKEWED], "linear", sinks=F.saliency.sink_spans(6))
    np.testing.assert_allclose(values, SKEWED)
    assert (lo, hi) == (0.0, 0.05)  # the largest mass outside spans 0 and 5
    assert "spans 0 & 5 saturate" in title
    _, _, hi_all, title_all = F.saliency.mass_colours([SKEWED], "linear")
    assert hi_all == 0.62 and "saturate" not in title_all


def test_mass_colours_log_and_rank_spread_skewed_masses():
    (logs,), lo, hi, _ = F.saliency.mass_colours([SKEWED], "log", sinks=[0, 5])
    np.testing.assert_allclose(logs, np.log10(SKEWED))
    assert lo == pytest.approx(np.log10(0.01)) and hi == pytest.approx(np.log10(0.05))
    (ranks, other), lo, hi, title = F.saliency.mass_colours([SKEWED, SKEWED[::-1]], "rank")
    assert ranks.tolist() == [1.0, 0.4, 0.0, 0.6, 0.2, 0.8] and other.tolist() == ranks[::-1].tolist()
    assert (lo, hi) == (0.0, 1.0) and "rank" in title
    with pytest.raises(SraVizError, match="'cubic' is not one of linear, log, rank"):
        F.saliency.mass_colours([SKEWED], "cubic")


def test_span_mass_text_draws_the_chosen_scale_for_both_sides():
    texts = ["The", " cat", " sat", " on", " mats", "."]
    fig = F.span_mass_text(texts, SKEWED, SKEWED[::-1], scale="rank", exclude_sinks=True)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert np.asarray(bars[0].marker.color).tolist() == [1.0, 0.4, 0.0, 0.6, 0.2, 0.8]
    assert bars[0].marker.cmax == bars[1].marker.cmax == 1.0
    linear = F.span_mass_text(texts, SKEWED, SKEWED, exclude_sinks=True)
    bar = [t for t in linear.data if isinstance(t, go.Bar)][1]
    assert bar.marker.cmax == pytest.approx(0.05) and "saturate" in bar.marker.colorbar.title.text


def test_attention_heatmap_shows_the_chosen_head_and_ranges_without_specials():
    rng = np.random.default_rng(0)
    A = rng.random((3, 5, 5)) * 0.1
    A[:, :, 0] = 0.9  # a <bos> sink column
    labels = ["<bos>", "a", "b", "c", "d"]
    one = F.attention_heatmap(A, labels, head=2, special=[True, False, False, False, False])
    (trace,) = one.data
    assert trace.name == "head 2" and not one.layout.updatemenus  # no menu that could say otherwise
    np.testing.assert_allclose(np.asarray(trace.z), np.round(A[2], 5))
    assert trace.zmax < 0.1 and "without" in trace.colorbar.title.text
    every = F.attention_heatmap(A, labels)
    assert [t.name for t in every.data] == ["all heads (mean)", "head 0", "head 1", "head 2"]
    assert every.data[0].zmax == pytest.approx(0.9) and len(every.layout.updatemenus[0].buttons) == 4
    with pytest.raises(SraVizError, match="head 3 does not exist"):
        F.attention_heatmap(A, labels, head=3)


# ---------------------------------------------------------------- real features


@pytest.fixture(scope="module")
def real(default_pair):
    from sra_viz.extraction import analyze_text

    return analyze_text(TEXT, default_pair)


@pytest.mark.slow
def test_saliency_text_real_masses(real):
    fig = F.saliency_figure(real)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [b.name for b in bars] == ["teacher span mass", "student span mass"]
    n = len(real)
    for bar, side in zip(bars, (real.teacher, real.student), strict=True):
        colors = np.asarray(bar.marker.color)
        assert colors.shape == (n,)
        mass = side.span_mass.numpy()
        np.testing.assert_allclose(colors, mass / mass.sum(), rtol=1e-6)
    assert bars[0].marker.cmax == bars[1].marker.cmax  # one scale for both sides


@pytest.mark.slow
def test_attention_heatmap_real_heads(real):
    for side in ("teacher", "student"):
        att = getattr(real, side).attention.numpy()  # (H, L, L)
        fig = F.attention_figure(real, side=side)
        heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
        assert len(heatmaps) == att.shape[0] + 1
        assert [t.visible for t in heatmaps] == [True] + [False] * att.shape[0]
        np.testing.assert_allclose(np.asarray(heatmaps[0].z), att.mean(0), atol=1e-5)
        np.testing.assert_allclose(np.asarray(heatmaps[0].z).sum(1), 1.0, atol=1e-3)  # causal softmax rows
        assert len(fig.layout.updatemenus[0].buttons) == att.shape[0] + 1
    assert "&lt;bos&gt;" in F.attention_figure(real, side="teacher").layout.xaxis.ticktext


@pytest.mark.slow
def test_top_spans_real_order(real):
    fig = F.top_spans_figure(real, k=5)
    sal = real.saliency.numpy()
    order = np.argsort(-sal, kind="stable")[:5]
    teacher_bar = _trace(fig, "teacher mass share")
    assert [int(y.split(":")[0]) for y in teacher_bar.y] == order.tolist()
    np.testing.assert_allclose(_trace(fig, "saliency ŵ").x, sal[order], rtol=1e-6)


@pytest.mark.slow
def test_com_scatter_real_centers_2d_and_3d(real):
    T, S = real.teacher.centers[-1].numpy(), real.student.centers[-1].numpy()
    s_al, t_al = geometry.procrustes_align(S, T)
    texts = [sp.text for sp in real.alignment.spans]
    for k, kind in ((2, go.Scatter), (3, go.Scatter3d)):
        xy = projection.project_pca(np.vstack([t_al, s_al]), n_components=k)
        fig = F.com_scatter(
            xy[: len(T)], xy[len(T) :], texts, color_by=real.saliency.numpy(), color_title="saliency"
        )
        assert [t.name for t in fig.data] == ["span pairs", "teacher", "student"]
        assert all(isinstance(t, kind) for t in fig.data)
        assert len(fig.data[0].x) == 3 * len(T)  # teacher, student, gap per span
        assert fig.data[1].marker.line.color == F.PALETTE["teacher"]
        assert fig.data[2].marker.line.color == F.PALETTE["student"]
        assert "東京" in "".join(fig.data[1].hovertext)


@pytest.mark.slow
def test_corpus_scatter_real_corpus_and_single_text(real, default_pair):
    from sra_viz.extraction import extract_corpus

    corpus = extract_corpus([TEXT, "Paris is the capital of France.", "2 + 2 = 4"], default_pair)
    fig = F.corpus_scatter(corpus)
    n = len(corpus.frame)
    assert len(fig.data[1].x) == len(fig.data[2].x) == n
    assert "procrustes" in fig.layout.title.text
    colors = list(fig.data[1].marker.color)  # categorical by text id: one colour per text
    assert len(set(colors)) == 3 and colors[0] != colors[-1]
    one = F.corpus_scatter(real, student_map="least_squares")
    assert "least-squares" in one.layout.title.text and len(one.data[1].x) == len(real)
    np.testing.assert_allclose(one.data[1].marker.color, real.saliency.numpy(), rtol=1e-6)
    with pytest.raises(SraVizError, match="student_map"):
        F.corpus_scatter(real, student_map="magic")


@pytest.mark.slow
def test_gram_matrices_real(real):
    T, S = real.teacher.centers[-1].numpy(), real.student.centers[-1].numpy()
    fig = F.gram_matrices(T, S, [sp.text for sp in real.alignment.spans])
    gt, gs, diff = (np.asarray(t.z) for t in fig.data)
    np.testing.assert_allclose(np.diag(gt), 1.0, atol=1e-3)
    np.testing.assert_allclose(diff, gs - gt, atol=2e-4)
    dist = geometry.gram_distance(T, S)
    assert f"{dist:.4f}" in fig.layout.annotations[2].text


@pytest.mark.slow
def test_geometry_over_training_real_frames(real):
    T, S = real.teacher.centers[-1].numpy(), real.student.centers[-1].numpy()
    s_al, t_al = geometry.procrustes_align(S, T)
    steps = [0, 10, 20, 30]
    snaps = [
        t_al + (1 - a) * (s_al - t_al) for a in np.linspace(0, 1, len(steps))
    ]  # student moving to teacher
    proj = projection.project_snapshots(t_al, snaps, steps=steps)
    fig = F.snapshots_figure(proj, [sp.text for sp in real.alignment.spans])
    assert [f.name for f in fig.frames] == [str(s) for s in steps]
    n = len(real)
    for frame in fig.frames:
        assert [type(t) for t in frame.data] == [go.Scattergl] * 3
        assert len(frame.data[1].x) == len(frame.data[2].x) == n
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    everything = np.concatenate([proj.teacher.reshape(-1, 2), proj.student.reshape(-1, 2)])
    assert xr[0] <= everything[:, 0].min() and everything[:, 0].max() <= xr[1]
    assert yr[0] <= everything[:, 1].min() and everything[:, 1].max() <= yr[1]
    np.testing.assert_allclose(fig.frames[-1].data[2].x, fig.frames[-1].data[1].x, atol=1e-9)  # converged
    assert len(fig.layout.sliders[0].steps) == len(steps)


@pytest.mark.slow
def test_convergence_curves_real_metrics(default_pair):
    """Real probe metrics per student layer (as steps) for saliency-weighted and uniform pooling."""
    from sra_viz.extraction import analyze_text

    layers = (6, 12, 18, 24, -1)
    rows = []
    for method, mode in (("sra", "last_token"), ("uniform", "uniform")):
        f = analyze_text(TEXT, default_pair, teacher_layers=(-1,), student_layers=layers, mass_mode=mode)
        T = f.teacher.centers[-1].numpy()
        for step, layer in enumerate(layers):
            S = f.student.centers[layer].numpy()
            s_al, t_al = geometry.procrustes_align(S, T)
            rows.append(
                dict(
                    step=step,
                    method=method,
                    probe_cka=geometry.linear_cka(S, T),
                    probe_gram_distance=geometry.gram_distance(S, T),
                    probe_cos=geometry.mean_matched_cosine(s_al, t_al),
                )
            )
    fig = F.convergence_curves(rows)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [F.METRIC_TITLES[c] for c in ("probe_cos", "probe_cka", "probe_gram_distance")]
    assert len(fig.data) == 2 * 3
    assert [t.name for t in fig.data if t.showlegend] == ["sra", "uniform"]
    assert {t.line.color for t in fig.data if t.name == "sra"} == {F.PALETTE["sra"]}
    cka = [t for t in fig.data if t.name == "sra" and t.xaxis == "x2"][0]
    np.testing.assert_allclose(cka.y, [r["probe_cka"] for r in rows if r["method"] == "sra"])


@pytest.fixture(scope="module")
def tiny_run(default_pair, tmp_path_factory):
    """A real 2-step SRA run (truncated 2-block student) with probe metrics and snapshots at every step."""
    from sra_viz.distill import DistillConfig, DistillSession

    out = tmp_path_factory.mktemp("runs") / "sra"
    cfg = DistillConfig(
        method="sra",
        steps=2,
        batch_size=2,
        max_length=32,
        student_variant="truncated",
        student_k=2,
        probe_size=2,
        heldout_size=2,
        eval_size=0,  # no held-out generations: these figures draw the metrics and the snapshots
        log_every=1,
        snapshot_every=1,
        checkpoint_every=0,
        out=str(out),
    )
    assert DistillSession(cfg, pair=default_pair).run() == "finished"
    return out


@pytest.mark.slow
def test_run_figures_from_a_real_distillation_run(tiny_run):
    from sra_viz.distill import load_run

    _, metrics, snaps = load_run(tiny_run)
    fig = F.run_metrics_figure([tiny_run])
    titles = [a.text for a in fig.layout.annotations]
    for col in ("loss", "span", "geo", "kd", "ce", "probe_cos", "probe_cka", "heldout_ppl"):
        assert F.METRIC_TITLES[col] in titles, col
    assert not {"lr", "epoch", "step_time_s"} & {a.text for a in fig.layout.annotations}
    (legend,) = [t for t in fig.data if t.showlegend]
    assert legend.name == "sra · sra" and legend.line.color == F.PALETTE["sra"]
    panel = titles.index(F.METRIC_TITLES["loss"]) + 1
    loss = [t for t in fig.data if t.xaxis == ("x" if panel == 1 else f"x{panel}")][0]
    np.testing.assert_allclose(loss.y, metrics.dropna(subset=["loss"])["loss"])

    geo = F.snapshots_figure(snaps, metrics=metrics)
    assert [f.name for f in geo.frames] == [str(s) for s in snaps.steps] == ["0", "1", "2"]
    assert all(len(f.data[2].x) == len(snaps.span_text) for f in geo.frames)
    cos0 = metrics.set_index("step").at[0, "probe_cos"]
    assert f"cos {cos0:.3f}" in geo.frames[0].layout.title.text
    gram = F.gram_matrices(snaps.teacher, snaps.student[-1], snaps.span_text)
    assert np.asarray(gram.data[0].z).shape == (len(snaps.span_text),) * 2


def test_convergence_curves_columns_smoothing_and_errors():
    rows = [dict(step=s, loss=1.0 / (s + 1), loss_kd=0.5, run=r) for r in ("SRA", "ULD") for s in range(10)]
    rows += [dict(step=s, heldout_ppl=20.0 - s, run="SRA") for s in (0, 5)]
    fig = F.convergence_curves(pd.DataFrame(rows), smoothing=0.5)
    assert [a.text for a in fig.layout.annotations] == [
        F.METRIC_TITLES[c] for c in ("loss", "loss_kd", "heldout_ppl")
    ]
    raw = [t for t in fig.data if t.name == "SRA raw"]
    assert raw and all(t.opacity == 0.3 for t in raw)
    ppl = [t for t in fig.data if t.name == "SRA" and t.xaxis == "x3"][0]
    assert ppl.mode == "lines+markers" and list(ppl.x) == [0, 5]
    with pytest.raises(SraVizError, match="'step' column"):
        F.convergence_curves([{"loss": 1.0}])


# ---------------------------------------------------------------- export


def test_html_export_is_offline_and_written(tmp_path):
    fig = F.com_scatter(np.zeros((3, 2)), np.ones((3, 2)), ["a", "<b>", "c"])
    path = tmp_path / "fig.html"
    html = export.figure_to_html(fig, path, title="CoMs")
    assert path.read_text(encoding="utf-8") == html
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html)
    assert not re.search(r"<script[^>]*\ssrc=", html)  # no external script of any kind
    assert "plotly.js v" in html and len(html) > 1_000_000  # plotly.js is inlined
    assert "<title>CoMs</title>" in html and "&lt;b&gt;" in html
    animated = F.geometry_over_training(np.zeros((3, 4, 2)), np.ones((3, 4, 2)), [0, 1, 2])
    autoplay = r"Plotly\.animate\(\s*['\"][0-9a-f-]{36}['\"]"  # the call plotly adds after newPlot
    assert re.search(autoplay, animated.to_html(include_plotlyjs=False))  # the default plays on load
    assert not re.search(autoplay, export.figure_to_html(animated))  # ours opens on step 0
    assert export.figure_to_html_bytes(fig).lower().startswith(b"<!doctype html>")


def test_png_and_svg_export_of_a_real_alignment_diagram(teacher_tokenizer, student_tokenizer, tmp_path):
    """Static export renders in a headless Chromium (scripts/install_browser.sh installs it)."""
    import shutil
    import struct

    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        pytest.skip("no Chromium: run `make browser` (scripts/install_browser.sh)")
    from sra_viz.alignment import align_spans

    fig = F.alignment_figure(align_spans("Tokyo 東京 & café.", teacher_tokenizer, student_tokenizer))
    png = export.figure_to_image(fig, tmp_path / "alignment.png", scale=2.0).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (2 * fig.layout.width, 2 * fig.layout.height)
    svg = export.figure_to_image_bytes(fig, "svg").decode("utf-8")
    assert svg.startswith("<svg") and "Span alignment" in svg and "東京" in svg
    with pytest.raises(SraVizError, match="give a .png or .svg file name"):
        export.figure_to_image(fig, tmp_path / "alignment.jpg")
    with pytest.raises(SraVizError, match="'gif' is not one of png, svg"):
        export.figure_to_image_bytes(fig, "gif")


def test_image_export_tries_again_only_when_kaleido_called_its_page_too_early(monkeypatch):
    """kaleido's page can be called before its script ran (a race under load): that error alone is tried
    again, a bounded number of times; any other error is one SraVizError at once."""
    import plotly.io as pio

    early = RuntimeError("JavascriptError: ReferenceError: kaleido_scopes is not defined")

    def kaleido(*outcomes):
        """A stand-in for plotly.io.to_image giving ``outcomes`` in turn (an exception is raised); the
        formats it was called with are in the returned list."""
        calls: list[str] = []

        def to_image(fig, format, scale):  # noqa: A002 (plotly's keyword)
            calls.append(format)
            outcome = outcomes[min(len(calls), len(outcomes)) - 1]
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        monkeypatch.setattr(pio, "to_image", to_image)
        return calls

    calls = kaleido(*[early] * (export.EXPORT_TRIES - 1), b"\x89PNG...")
    assert export.figure_to_image_bytes(go.Figure(), "png") == b"\x89PNG..."
    assert len(calls) == export.EXPORT_TRIES

    calls = kaleido(early)  # every call too early
    with pytest.raises(SraVizError, match="PNG export failed .*kaleido_scopes"):
        export.figure_to_image_bytes(go.Figure(), "png")
    assert len(calls) == export.EXPORT_TRIES  # bounded

    calls = kaleido(RuntimeError("ChromeNotFoundError: no browser"), b"never")
    with pytest.raises(SraVizError, match="SVG export failed .*no browser.*make browser"):
        export.figure_to_image_bytes(go.Figure(), "svg")
    assert calls == ["svg"]  # not tried again


def test_csv_and_parquet_round_trip_of_a_real_alignment(teacher_tokenizer, student_tokenizer, tmp_path):
    from sra_viz.alignment import align_spans

    al = align_spans(TEXT, teacher_tokenizer, student_tokenizer)
    frame = al.to_frame()
    back = pd.read_csv(io.StringIO(export.frame_to_csv(al)), keep_default_na=False)
    assert back["text"].tolist() == frame["text"].tolist()  # newlines, tabs, NBSP survive quoting
    assert back["teacher_start"].tolist() == frame["teacher_start"].tolist()
    pq = pd.read_parquet(export.frame_to_parquet(al, tmp_path / "spans.parquet"))
    assert pq["text"].tolist() == frame["text"].tolist()
    assert [list(v) for v in pq["student_tokens"]] == [list(v) for v in frame["student_tokens"]]
    assert export.frame_to_csv_bytes(frame).decode("utf-8") == export.frame_to_csv(frame)


# ----------------------------------------------------------------------------- change since step 0


def _snapshots(seed: int = 0, n: int = 12, d: int = 6, steps=(0, 5, 10)):
    """A teacher and a student that moves a known share of the way toward it at each step."""
    from sra_viz.distill.runs import RunSnapshots

    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(n, d))
    start = rng.normal(size=(n, d))
    student = [start + (s / (2 * steps[-1])) * (teacher - start) for s in steps]  # halfway at the end
    extra = {s: {"student": x[:, :4]} for s, x in zip(steps, student, strict=True)}
    texts = [f"w{i}" for i in range(n)]
    return RunSnapshots(list(steps), teacher, student, texts, np.arange(n) % 2, np.full(n, 1.0 / n), extra)


def test_matched_distances_are_cosine_distances():
    from sra_viz.figures.change import matched_distances

    snaps = _snapshots()
    D = matched_distances(snaps.teacher, snaps.student)
    assert D.shape == (3, 12)
    t, s = snaps.teacher[3], snaps.student[2][3]
    assert np.isclose(D[2, 3], 1 - t @ s / np.linalg.norm(t) / np.linalg.norm(s))
    assert (D[-1] <= D[0] + 1e-12).all()  # every span moved toward its teacher span
    with pytest.raises(SraVizError, match="do not match the teacher"):
        matched_distances(snaps.teacher, [snaps.teacher[:3]])


def test_span_distance_figure_scales_are_fixed_by_step_zero():
    from sra_viz.figures.change import span_distance_figure

    D = np.array([[0.50, 0.60, 0.70, 0.40], [0.499, 0.601, 0.699, 0.401]])  # noise-sized change
    fig = span_distance_figure([0, 10], D)
    change_axis = fig.layout.yaxis2.range
    floor = 0.5 * np.std(D[0])
    assert change_axis[1] >= floor and np.isclose(change_axis[0], -change_axis[1])  # not stretched to ±0.001
    assert list(fig.layout.yaxis.range)[0] == 0  # distances from 0
    share = [t for t in fig.data if t.type == "scatter"][0]
    assert list(share.y) == [0.0, 0.5]  # at step 0 no span is closer; then 2 of 4
    with pytest.raises(SraVizError, match="one row per step"):
        span_distance_figure([0], D)


def test_gram_change_figure_one_scale_and_sign():
    from sra_viz.figures.change import gram_change_figure

    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(5, 4))
    fig = gram_change_figure(teacher, rng.normal(size=(5, 3)), teacher[:, :3], steps=(0, 9))
    before, after, change = fig.data
    assert before.zmax == after.zmax and before.zmin == after.zmin == 0  # one colour scale
    assert np.allclose(np.asarray(change.z), np.asarray(after.z) - np.asarray(before.z))
    assert change.zmin == -change.zmax
    assert "step 0" in fig.layout.annotations[0].text and "step 9" in fig.layout.annotations[1].text


def test_change_figures_of_run_snapshots():
    from sra_viz.figures.change import change_figures

    figs = change_figures(_snapshots())
    assert sorted(figs) == ["displacement", "distances", "gram"]
    closer = [t for t in figs["displacement"].data if t.name and "closer" in t.name]
    assert closer and closer[0].name.startswith("12 spans closer")  # all moved toward the teacher
    assert len(figs["gram"].data[0].z) == 6  # text 0 holds spans 0, 2, ..., 10
    at_start = change_figures(_snapshots(), step=0)  # step 0 against itself: nothing has moved
    change = [t for t in at_start["distances"].data if t.type == "box"][1]
    assert np.allclose(change.y, 0) and np.allclose(np.asarray(at_start["gram"].data[2].z), 0)
    moved = [t.name for t in at_start["displacement"].data if t.name and t.name != "teacher spans"]
    assert moved == ["12 spans unchanged (step 0 = step 0)"]  # not "farther at step 0 than at step 0"
    with pytest.raises(SraVizError, match="no probe snapshots"):
        change_figures(None)
    with pytest.raises(SraVizError, match="step 7 has no snapshot"):
        change_figures(_snapshots(), step=7)


def test_convergence_curves_do_not_stretch_noise():
    rows = [
        {"step": s, "probe_cos": 0.494 - 0.001 * (s // 10), "loss": 3.0 - 0.1 * s} for s in (0, 10, 20, 30)
    ]
    fig = F.convergence_curves(rows, columns=["loss", "probe_cos"])
    lo, hi = fig.layout.yaxis2.range
    assert hi - lo >= 0.05 - 1e-9 and lo <= 0.491 and hi >= 0.494
    assert fig.layout.yaxis.range is None  # the loss moves a lot: autoscaled


# ---------------------------------------------------------------- held-out evaluation (no models)

TEACHER_EVAL = {"n": 4, "rouge_l": 0.31, "teacher_agreement": None, "vcap_kl": None, "heldout_loss": 2.0}
BEFORE_EVAL = {"n": 4, "rouge_l": 0.12, "teacher_agreement": 0.25, "vcap_kl": 1.5, "heldout_loss": 3.5}
AFTER_EVAL = {"n": 4, "rouge_l": 0.18, "teacher_agreement": 0.4, "vcap_kl": 0.9, "heldout_loss": 3.1}


def _bars_by_measure(fig: go.Figure) -> dict[str, dict[str, float | None]]:
    """measure key -> {bar label: value}, read back from the subplots (x, x2, ... in EVAL_MEASURES order)."""
    from sra_viz.figures.evaluation import EVAL_MEASURES

    axes = {("x" if i == 0 else f"x{i + 1}"): m for i, m in enumerate(EVAL_MEASURES)}
    out: dict[str, dict[str, float | None]] = {m: {} for m in EVAL_MEASURES}
    for trace in fig.data:
        if trace.type == "bar":
            out[axes[trace.xaxis]][trace.x[0]] = trace.y[0]
    return out


def test_before_after_figure_draws_each_measure_of_each_model():
    from sra_viz.figures.evaluation import before_after_figure

    ppl = {**AFTER_EVAL, "heldout_ppl": 22.2, "n_spans": 37}
    fig = before_after_figure({"teacher": TEACHER_EVAL, "student before": BEFORE_EVAL, "student after": ppl})
    bars = _bars_by_measure(fig)
    for key in ("rouge_l", "teacher_agreement", "vcap_kl", "heldout_loss"):
        assert bars[key]["student before"] == BEFORE_EVAL[key]
        assert bars[key]["student after"] == AFTER_EVAL[key]
        assert bars[key]["teacher"] == TEACHER_EVAL[key]  # None where it does not apply
    colors = {t.name: t.marker.color for t in fig.data}
    assert colors == {
        "teacher": F.PALETTE["teacher"],
        "student before": "#999999",
        "student after": "#D55E00",
    }
    after_ce = [t for t in fig.data if t.name == "student after" and t.xaxis == "x4"][0]
    assert "3.1000" in after_ce.hovertext[0] and "perplexity: 22.2" in after_ce.hovertext[0]
    teacher_kl = [t for t in fig.data if t.name == "teacher" and t.xaxis == "x3"][0]
    assert teacher_kl.y[0] is None and "n/a" in teacher_kl.hovertext[0]
    marked = {(a.xref, a.x) for a in fig.layout.annotations if a.text == "n/a"}
    assert marked == {("x2", "teacher"), ("x3", "teacher")}  # written where the bar would stand
    assert sum(t.showlegend for t in fig.data) == 3  # one legend entry per model
    # a model not evaluated (None) is left out, not drawn as zero
    partial = before_after_figure(
        {"teacher": TEACHER_EVAL, "student before": BEFORE_EVAL, "student after": None}
    )
    assert {t.name for t in partial.data} == {"teacher", "student before"}
    with pytest.raises(SraVizError, match="no held-out results"):
        before_after_figure({"student after": None})


def test_runs_heldout_figure_puts_the_teacher_first_and_ticks_step_zero():
    from sra_viz.figures.evaluation import runs_heldout_figure

    runs = {"sra · seed 0 · a": AFTER_EVAL, "ce · seed 0 · b": {**AFTER_EVAL, "rouge_l": 0.15}}
    fig = runs_heldout_figure(runs, teacher=TEACHER_EVAL, before={"sra · seed 0 · a": BEFORE_EVAL})
    first = [t for t in fig.data if t.xaxis == "x" and t.type == "bar"]
    assert [t.name for t in first] == ["teacher", "sra · seed 0 · a", "ce · seed 0 · b"]
    assert [t.y[0] for t in first] == [0.31, 0.18, 0.15]
    assert first[1].marker.color == F.PALETTE["sra"] and first[2].marker.color == F.PALETTE["baseline"]
    ticks = [t for t in fig.data if t.type == "scatter"]
    assert {t.marker.color for t in ticks} == {F.PALETTE["black"]}
    assert [(t.xaxis, t.x[0], t.y[0]) for t in ticks] == [
        ("x", "sra · seed 0 · a", 0.12),
        ("x2", "sra · seed 0 · a", 0.25),
        ("x3", "sra · seed 0 · a", 1.5),
        ("x4", "sra · seed 0 · a", 3.5),
    ]
    assert list(fig.layout.xaxis.categoryarray) == ["teacher", *runs]
    seeds = runs_heldout_figure(
        {"sra · seed 0": AFTER_EVAL, "sra · seed 1": AFTER_EVAL, "uld · seed 0": AFTER_EVAL}
    )
    hatch = {t.name: (t.marker.color, t.marker.pattern.shape) for t in seeds.data if t.xaxis == "x"}
    assert hatch["sra · seed 0"][0] == hatch["sra · seed 1"][0]  # one method, one colour ...
    assert len({h for _, h in hatch.values()}) == 2 and hatch["sra · seed 0"][1] != hatch["sra · seed 1"][1]
    with pytest.raises(SraVizError, match="no runs to compare"):
        runs_heldout_figure({})
    with pytest.raises(SraVizError, match="not drawn"):
        runs_heldout_figure(runs, before={"other": BEFORE_EVAL})
