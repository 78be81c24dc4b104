"""End to end in a real headless browser: `streamlit run app.py` driven by Playwright on Debian's Chromium.

Run: ``bash scripts/install_browser.sh && .venv/bin/python -m pytest tests/test_browser.py -q``
Screenshots go to ``tests/artifacts/`` (look at them: they are the point of this test).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"  # committed pictures of the app
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TEXT = "Distillation across tokenizers: Gemma reads 東京 and 🙂 differently from SmolLM2, yet spans align."

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"streamlit exited with {proc.returncode} before it was healthy:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit was not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _serve(log_name: str, **env_extra: str):
    """A `streamlit run app.py` subprocess on a free port (extra environment given); always terminated."""
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is missing: run `bash scripts/install_browser.sh` to install Debian's chromium"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    log = ARTIFACTS / log_name
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **env_extra}
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://localhost:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


# Under `make test` (`--dist loadgroup`) the tests of one app server run on one worker, which starts that
# server once (tests/conftest.py says how the marks reach xdist)
DEFAULT_APP = pytest.mark.xdist_group("default_app")
TINY_APP = pytest.mark.xdist_group("tiny_app")


@pytest.fixture(scope="module")
def app_url():
    """The app on the default pair."""
    with _serve("streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def tiny_app(tiny_pair_dirs, tmp_path_factory):
    """The app serving the tiny seeded pair to every session, with its own cache folder: (url, home)."""
    teacher_dir, student_dir = tiny_pair_dirs
    home = tmp_path_factory.mktemp("sra_viz_home")
    with _serve(
        "streamlit_tiny.log",
        SRA_VIZ_HOME=str(home),
        SRA_VIZ_TEACHER=str(teacher_dir),
        SRA_VIZ_STUDENT=str(student_dir),
    ) as url:
        yield url, home


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


def _no_exception(page) -> None:
    """Streamlit draws an uncaught exception as an stException block: there must be none."""
    shown = page.get_by_test_id("stException")
    assert shown.count() == 0, shown.first.inner_text()


def _steps_done(page) -> int:
    """The number before the slash of the "Steps done" metric ("2 / 3" -> 2)."""
    return int(_metric(page, "Steps done").split("/")[0])


@contextmanager
def _shot_on_failure(page, name: str):
    """Save what the browser showed when a step failed, then let the failure through."""
    try:
        yield
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{name}_failure.png"), full_page=True)
        raise


def _metric(page, label: str) -> str:
    """The value shown by the st.metric whose label is exactly ``label``."""
    label_node = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return (
        page.get_by_test_id("stMetric")
        .filter(has=label_node)
        .first.get_by_test_id("stMetricValue")
        .inner_text()
        .strip()
    )


def _open_tab(page, name: str, shows: str, seconds: float = 60.0) -> None:
    """Select the last tab called ``name`` until the text ``shows`` is visible in it: a page rerun that
    lands just after the click draws the tabs again with the first one selected, so it clicks again
    (bounded)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    shown = page.get_by_text(shows).first
    deadline = time.monotonic() + seconds
    while True:
        page.get_by_role("tab", name=name).last.click()
        try:
            shown.wait_for(state="visible", timeout=5_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise AssertionError(f"tab {name!r} did not show {shows!r} within {seconds:.0f} s") from None


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds:.0f} s")
        time.sleep(0.5)


@DEFAULT_APP
def test_alignment_diagram_in_browser(app_url, page, teacher_tokenizer, student_tokenizer):
    from sra_viz.alignment import align_spans

    expected = align_spans(TEXT, teacher_tokenizer, student_tokenizer).stats()
    page.goto(f"{app_url}/alignment", wait_until="networkidle")
    with _shot_on_failure(page, "alignment"):
        page.get_by_role("heading", name="Alignment").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=120_000)  # the default sample
        box = page.get_by_label("Text", exact=True)
        box.fill(TEXT)
        box.press("Control+Enter")  # commit the text area, as a user does with Ctrl+Enter or a click outside
        # the statistics switch to the pasted text: the same numbers the library gives
        _wait_for(lambda: _metric(page, "teacher tokens") == str(expected["teacher_tokens"]), 120)
        _wait_for(lambda: _metric(page, "student tokens") == str(expected["student_tokens"]), 30)
        assert _metric(page, "spans") == str(expected["spans"])
        plot = page.locator(".js-plotly-plot").first
        plot.wait_for(state="visible", timeout=60_000)
        time.sleep(1.5)  # let plotly finish drawing before the screenshot
        page.screenshot(path=str(ARTIFACTS / "alignment.png"), full_page=True)
        _no_exception(page)
        assert page.get_by_role("heading", name="Span table").count() == 1
        assert page.get_by_test_id("stDownloadButton").count() == 4  # CSV, HTML, PNG, SVG
    assert not page.errors, page.errors


COMPARE_TEXT = (
    "Gemma reads 東京 and 👨\u200d👩\u200d👧 differently\u00a0from SmolLM2:\ttabs,\u3000gaps, 3.14159."
)

# Pixel position (in the viewport) of point ``i`` of the trace named ``name`` of a plotly figure.
_POINT_JS = """([name, i]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
    (el) => el.data && el.data.some((t) => t.name === name));
  const trace = gd.data.find((t) => t.name === name), full = gd._fullLayout, box = gd.getBoundingClientRect();
  return [box.left + full.xaxis._offset + full.xaxis.l2p(trace.x[i]),
          box.top + full.yaxis._offset + full.yaxis.l2p(trace.y[i])];
}"""


@DEFAULT_APP
def test_aligner_comparison_in_browser(app_url, page, teacher_tokenizer, student_tokenizer):
    """The Alignment page's "Aligners compared" view: the figure, a hover naming a ULD pair's tokens and
    bytes, and the screenshot docs/screenshots/alignment_comparison.png (look at it)."""
    from urllib.parse import quote

    from sra_viz.aligner_comparison import compare_aligners
    from sra_viz.alignment import align_spans

    comparison = compare_aligners(align_spans(COMPARE_TEXT, teacher_tokenizer, student_tokenizer))
    uld = comparison.pairs["uld"]
    wrong = next(k for k, pair in enumerate(uld) if not pair.right)  # ULD's first wrong pair
    # the text comes by link (typed text can race the page's first run); the view is picked by a click
    page.goto(f"{app_url}/alignment?text={quote(COMPARE_TEXT)}", wait_until="networkidle")
    with _shot_on_failure(page, "alignment_comparison"):
        page.get_by_role("heading", name="Alignment").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=120_000)
        expected = str(len(comparison.pairs["sra"]))
        _wait_for(lambda: _metric(page, "spans") == expected, 120)
        page.get_by_text("Aligners compared", exact=True).click()  # the View control's second option
        figure = page.locator(".js-plotly-plot").filter(has_text="Aligners compared against the bytes")
        figure.wait_for(state="visible", timeout=120_000)
        assert "view=compare" in page.evaluate("document.location.href")
        for name in ("SRA spans", "GOLD groups", "ULD positions", "MinED edit distance"):
            assert figure.get_by_text(name).count() >= 1, name
        figure.scroll_into_view_if_needed()
        time.sleep(1.5)  # plotly's drawing
        x, y = page.evaluate(_POINT_JS, ["uld pairs", 3 * wrong])  # the pair's teacher side
        page.mouse.move(x - 20, y)
        page.mouse.move(x, y, steps=5)  # plotly hovers on mouse moves over the plot
        label = page.locator(".hoverlayer .hovertext").filter(has_text=f"ULD positions pair {wrong} · wrong")
        label.first.wait_for(timeout=30_000)
        start, end = uld[wrong].teacher_bytes[0]
        assert f"[{start}, {end})" in label.first.text_content()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "alignment_comparison.png"), full_page=True, timeout=120_000)
        _no_exception(page)
    assert not page.errors, page.errors


@TINY_APP
def test_alignment_view_opens_from_a_shared_link(
    tiny_app, browser, page, teacher_tokenizer, student_tokenizer
):
    """A link with ?text=...&word=1 opens Alignment on that text and option; editing the text moves the
    address bar with it, and the page's own "Share this view" link opens the same view elsewhere."""
    from urllib.parse import parse_qs, quote, urlsplit

    from sra_viz.alignment import align_spans

    url, _ = tiny_app
    shared = "Shared by link: 東京 & naïve café, 50% off?"
    words = align_spans(shared, teacher_tokenizer, student_tokenizer, granularity="word").stats()
    with _shot_on_failure(page, "alignment_link"):
        page.goto(f"{url}/alignment?text={quote(shared)}&word=1", wait_until="networkidle")
        box = page.get_by_label("Text", exact=True)
        _wait_for(lambda: box.input_value() == shared, 120)
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=300_000)  # tokenizers loaded
        _wait_for(lambda: _metric(page, "spans") == str(words["spans"]), 120)
        assert page.get_by_role("switch", name="Word-level spans").is_checked()
        edited = "Edited after opening: 🙂 ok."

        # the address bar follows the view (read from the page: Playwright's page.url can lag behind)
        def address() -> dict[str, list[str]]:
            return parse_qs(urlsplit(page.evaluate("document.location.href")).query)

        def typed_and_followed() -> bool:
            """Type the text until the page takes it: a rerun still running puts back the old value."""
            if address().get("text") == [edited]:
                return True
            if box.input_value() != edited or time.monotonic() - typed_at[0] > 10:
                box.fill(edited)
                box.press("Control+Enter")
                typed_at[0] = time.monotonic()
            page.wait_for_timeout(500)
            return False

        typed_at = [0.0]
        _wait_for(typed_and_followed, 120)
        assert address()["word"] == ["1"]
        page.get_by_text("Share this view").first.click()
        code = page.get_by_test_id("stCode").filter(has_text="/alignment?")
        code.first.wait_for(timeout=30_000)
        link = code.first.inner_text().strip().replace("\n", "")
        assert link.startswith(f"{url}/alignment?text=Edited%20after%20opening"), link
        time.sleep(1.5)  # plotly's drawing
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "alignment_shared_link.png"), full_page=True, timeout=120_000)
        _no_exception(page)
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        with _shot_on_failure(other, "alignment_link_opened"):
            other.goto(link, wait_until="networkidle")
            opened = other.get_by_label("Text", exact=True)
            _wait_for(lambda: opened.input_value() == edited, 120)
            assert other.get_by_role("switch", name="Word-level spans").is_checked()
            expected = align_spans(edited, teacher_tokenizer, student_tokenizer, granularity="word").stats()
            other.get_by_test_id("stMetricValue").first.wait_for(timeout=300_000)
            _wait_for(lambda: _metric(other, "spans") == str(expected["spans"]), 120)
            other.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=120_000)
            time.sleep(1.5)  # plotly's drawing
            other.screenshot(path=str(SCREENSHOTS / "alignment_link_opened.png"), timeout=120_000)
            _no_exception(other)
    finally:
        other.context.close()
    assert not page.errors, page.errors


@TINY_APP
def test_alignment_diagram_downloads_as_png(tiny_app, page, tmp_path):
    """The Diagram (PNG) button renders the figure with kaleido on the server and downloads a PNG."""
    import struct

    url, _ = tiny_app
    with _shot_on_failure(page, "alignment_png"):
        page.goto(f"{url}/alignment?text=Tokyo%20%E6%9D%B1%E4%BA%AC.", wait_until="networkidle")
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=300_000)
        button = page.get_by_test_id("stDownloadButton").filter(has_text="Diagram (PNG)")
        with page.expect_download(timeout=180_000) as download:
            button.get_by_role("button").click()
        assert download.value.suggested_filename == "alignment.png"
        png = Path(download.value.path()).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width >= 800 and height >= 200  # 2x the figure's layout size
        (tmp_path / "alignment.png").write_bytes(png)
        _no_exception(page)
    assert not page.errors, page.errors


@DEFAULT_APP
def test_distillation_runs_and_stops_in_browser(app_url, page, tmp_path):
    page.goto(f"{app_url}/distill", wait_until="networkidle")
    with _shot_on_failure(page, "distill"):
        _run_and_stop(page, tmp_path)
    assert not page.errors, page.errors


def _run_and_stop(page, runs_folder: Path) -> None:
    page.get_by_role("heading", name="Distill").first.wait_for(timeout=120_000)
    page.get_by_text("SRA terms and ablations").click()  # the loss scales, shown with their defaults
    geo = page.get_by_label("λ_geo", exact=True)
    geo.wait_for(timeout=10_000)
    assert float(geo.input_value()) == 50.0
    time.sleep(1.0)  # the expander's opening animation
    page.screenshot(path=str(ARTIFACTS / "distill_options.png"), full_page=True)
    page.get_by_text("Run folder and seed").click()
    folder = page.get_by_label("Runs folder", exact=True)
    folder.fill(str(runs_folder))
    folder.press("Enter")
    # a small run that fits a busy 2-core machine: 2 texts of at most 48 tokens, 4 probe texts; 40 steps,
    # so that a Stop clicked once the page shows step 1 (it redraws every LIVE_EVERY s, steps take well
    # under a second on an idle machine) lands well before the run could end by itself
    fields = (
        ("Steps", "40"),
        ("Batch size", "2"),
        ("Max tokens per text", "48"),
        ("Probe texts", "4"),
        ("Held-out evaluation examples", "2"),
        ("Longest generation (tokens)", "8"),
    )
    for label, value in fields:
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        _wait_for(lambda box=box, value=value: box.input_value() == value, 10)

    def settled() -> bool:  # a rerun of the page can put back a value typed during it: type it again
        wrong = [(lb, v) for lb, v in fields if page.get_by_label(lb, exact=True).input_value() != v]
        for label, value in wrong:
            page.get_by_label(label, exact=True).fill(value)
            page.get_by_label(label, exact=True).press("Enter")
            page.wait_for_timeout(500)  # the rerun that takes the value
        return not wrong

    _wait_for(settled, 60)
    main = page.get_by_test_id("stMainBlockContainer")  # not the header's own "Stop" (shown during reruns)
    main.get_by_role("button", name="Start").click()
    # the worker thread trains while the page keeps answering: the fragment redraws the metrics
    page.get_by_text(re.compile(r"Run (preparing|running)")).first.wait_for(timeout=60_000)
    assert _metric(page, "loss") == "–"
    _wait_for(lambda: _steps_done(page) >= 1, 400)
    loss = _metric(page, "loss")
    assert float(loss) > 0, f"the first step's loss is shown as {loss!r}"
    page.screenshot(path=str(ARTIFACTS / "distill_running.png"), full_page=True)
    main.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile(r"Run (stopped|finished)")).first.wait_for(timeout=300_000)
    stopped_at = _steps_done(page)
    # Stop lands while a step runs (a step takes seconds): the run ends between steps with its checkpoint
    assert 1 <= stopped_at < 40, f"stopped at step {stopped_at}"
    page.get_by_text(f"Run stopped at step {stopped_at}").first.wait_for(timeout=10_000)
    resume = main.get_by_role("button", name="Resume", exact=False).first
    _wait_for(resume.is_enabled, 30)  # the whole page reruns once the run has ended
    page.screenshot(path=str(ARTIFACTS / "distill_stopped.png"), full_page=True)
    resume.click()  # goes on from the checkpoint
    page.get_by_text("Run finished").first.wait_for(timeout=400_000)
    assert _steps_done(page) == 40
    page.get_by_text("Convergence").first.wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=30_000)
    time.sleep(1.5)
    page.screenshot(path=str(ARTIFACTS / "distill_finished.png"), full_page=True)
    _no_exception(page)


# ------------------------------------------------------------------- runs that outlive a page (tiny pair)


def _open_distill(page, url: str, runs_folder: str | None = None) -> None:
    """The Distill page of a fresh session, its models loaded; the runs folder typed when given."""
    page.goto(f"{url}/distill", wait_until="networkidle")
    page.get_by_role("heading", name="Distill").first.wait_for(timeout=120_000)
    page.get_by_text("Run folder and seed").first.wait_for(timeout=300_000)  # drawn once the pair is loaded
    if runs_folder is not None:
        box = page.get_by_label("Runs folder", exact=True)
        # the expander keeps its state across reruns: click it only while its field is hidden
        _wait_for(lambda: box.is_visible() or _open_expander(page, "Run folder and seed"), 60)
        _fill(page, "Runs folder", runs_folder)


def _open_expander(page, title: str) -> bool:
    """Click the expander ``title`` and say whether its content is now shown (False: try again)."""
    page.get_by_text(title).first.click()
    page.wait_for_timeout(500)  # the expander's opening animation
    return page.get_by_label("Runs folder", exact=True).is_visible()


def _fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    _wait_for(lambda: box.input_value() == value, 20)


def _button(page, name: str):
    return page.get_by_test_id("stMainBlockContainer").get_by_role("button", name=name, exact=True)


def _shot(page, name: str) -> None:
    page.screenshot(
        path=str(ARTIFACTS / name), full_page=True, timeout=120_000
    )  # fonts load slowly on busy CPUs


@TINY_APP
def test_runs_folder_bad_then_empty_and_change_views(tiny_app, page):
    url, home = tiny_app
    with _shot_on_failure(page, "distill_folder"):
        _open_distill(page, url, "/proc/nope/runs")
        for label, value in (("Steps", "4"), ("Probe every N steps", "2"), ("Probe texts", "4")):
            _fill(page, label, value)
        _button(page, "Start").click()
        message = page.get_by_text(re.compile(r"runs folder '/proc/nope/runs' cannot be created"))
        message.first.wait_for(timeout=60_000)
        assert message.count() == 1 and page.get_by_text("FileNotFoundError").count() == 0
        _shot(page, "distill_bad_folder.png")
        _fill(page, "Runs folder", "")  # empty: the cache folder's runs
        _button(page, "Start").click()
        page.get_by_text("Run finished").first.wait_for(timeout=600_000)
        runs = [p for p in (home / "runs").iterdir() if (p / "config.json").is_file()]
        assert len(runs) == 1, runs
        assert page.get_by_text(str(runs[0])).count() >= 1  # the status line names the run folder
        page.get_by_text("Distance of each span to its teacher span").first.wait_for(timeout=60_000)
        _shot(page, "distill_change_end.png")
        page.get_by_test_id("stTabs").first.screenshot(path=str(ARTIFACTS / "distill_change_views_end.png"))
        # the same run reopened from Past runs, step 0 against itself: every change is 0
        slider = page.get_by_role("slider").last
        slider.focus()
        slider.press("Home")
        page.get_by_text("step 0: mean").first.wait_for(timeout=60_000)
        _wait_for(lambda: page.get_by_text("step 0: mean").count() >= 2, 60)  # both Gram titles at step 0
        page.get_by_test_id("stTabs").last.screenshot(path=str(ARTIFACTS / "distill_change_views_step0.png"))
        _no_exception(page)
    assert not page.errors, page.errors


@TINY_APP
def test_stop_early_says_what_was_saved_in_browser(tiny_app, page, tmp_path):
    """Stop pressed as soon as the run shows: the page says what is on disk. A stop during the set-up
    saves nothing (the deterministic case is tests/test_app.py::test_distill_stop_while_preparing_...);
    one that lands in the step-0 probe ends with a step-0 checkpoint. Either way the message is true."""
    from sra_viz.distill.runs import checkpoint_dir

    url, _ = tiny_app
    with _shot_on_failure(page, "distill_preparing"):
        _open_distill(page, url, str(tmp_path))
        for label, value in (("Steps", "4"), ("Probe texts", "64"), ("Max tokens per text", "512")):
            _fill(page, label, value)
        _button(page, "Start").click()
        page.get_by_text(re.compile(r"Run (preparing|running)")).first.wait_for(timeout=60_000)
        _button(page, "Stop").click()
        page.get_by_text(re.compile(r"Run stopped")).first.wait_for(timeout=600_000)
        _wait_for(lambda: _button(page, "Start").is_enabled(), 60)
        (run_dir,) = [p for p in tmp_path.iterdir() if (p / "config.json").is_file()]
        if page.get_by_text("Run stopped while preparing").count():
            assert checkpoint_dir(run_dir) is None and page.get_by_text("checkpoint is saved").count() == 0
            assert not _button(page, "Resume").is_enabled()  # nothing to resume from
        else:
            page.get_by_text("Run stopped at step 0: its checkpoint is saved").first.wait_for(timeout=10_000)
            assert checkpoint_dir(run_dir) is not None and _button(page, "Resume").is_enabled()
        _shot(page, "distill_stopped_early.png")
        _no_exception(page)
    assert not page.errors, page.errors


@TINY_APP
def test_reload_and_second_session_find_the_running_run(tiny_app, browser, page, tmp_path):
    url, _ = tiny_app
    with _shot_on_failure(page, "distill_reload"):
        _open_distill(page, url, str(tmp_path))
        for label, value in (("Steps", "2000"), ("Probe every N steps", "500"), ("Probe texts", "4")):
            _fill(page, label, value)
        _button(page, "Start").click()
        _wait_for(lambda: page.get_by_text("Run running").count() > 0 and _steps_done(page) >= 1, 600)
        page.reload(wait_until="networkidle")  # a new browser session with empty state
        page.get_by_text("Run running").first.wait_for(timeout=300_000)
        _wait_for(lambda: _button(page, "Stop").is_enabled() and not _button(page, "Start").is_enabled(), 60)
        before = _steps_done(page)
        _wait_for(lambda: _steps_done(page) > before, 300)  # live: the metrics keep moving after the reload
        _shot(page, "distill_reloaded.png")
    other = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    try:
        with _shot_on_failure(other, "distill_second"):
            _open_distill(other, url, str(tmp_path))
            other.get_by_text("Run running").first.wait_for(timeout=300_000)
            _wait_for(lambda: not _button(other, "Start").is_enabled(), 60)
            resume = other.get_by_role("button", name="Resume this run")
            resume.wait_for(timeout=60_000)
            # the page first draws the default runs folder's runs (stopped ones are resumable there); once
            # it has settled on this folder, whose one run is the running one, Resume must be off
            (run_name,) = [p.name for p in tmp_path.iterdir() if (p / "config.json").exists()]
            other.get_by_text(re.compile(rf"^{re.escape(run_name)}: ")).first.wait_for(timeout=60_000)
            _wait_for(lambda: not resume.is_enabled(), 30)  # no second writer on the running run
            _shot(other, "distill_second_session.png")
            _button(other, "Stop").click()  # the second session stops the first one's run
            other.get_by_text(re.compile(r"Run stopped at step \d+")).first.wait_for(timeout=300_000)
    finally:
        other.context.close()
    page.get_by_text(re.compile(r"Run stopped at step \d+")).first.wait_for(timeout=120_000)
    _shot(page, "distill_stopped_elsewhere.png")
    _no_exception(page)
    assert not page.errors, page.errors


@TINY_APP
def test_heldout_panel_of_a_reopened_run(tiny_app, tiny_sra_run, page, tmp_path):
    """A tiny-pair run made by the engine (tests/conftest.py), reopened: the before/after figure and the
    generations side by side (screenshots distill_heldout_*.png: look at them)."""
    import shutil

    url, _ = tiny_app
    shutil.copytree(tiny_sra_run[0], tmp_path / "sra-heldout")
    with _shot_on_failure(page, "distill_heldout"):
        _open_distill(page, url, str(tmp_path))
        page.get_by_text(re.compile(r"^sra-heldout: ")).first.wait_for(timeout=120_000)
        _open_tab(page, "Held-out: did it help?", "Did it help? Held-out evaluation")
        time.sleep(1.5)  # let plotly finish drawing
        page.get_by_test_id("stTabs").last.screenshot(path=str(ARTIFACTS / "distill_heldout_figure.png"))
        _open_tab(page, "Held-out generations", "Held-out prompt")
        page.get_by_text("student after", exact=True).last.wait_for(timeout=60_000)
        page.get_by_test_id("stTabs").last.screenshot(path=str(ARTIFACTS / "distill_heldout_generations.png"))
        assert page.get_by_role("button", name="Export", exact=True).count() == 1
        _no_exception(page)
    assert not page.errors, page.errors
