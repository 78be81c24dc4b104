"""Step time of one distillation config run three ways: from the app in a browser, in the app's worker
thread without a page, and as the CLI runs it (`sra-viz distill` in a process of its own).

    app     `streamlit run app.py` + headless Chromium on the Distill page, the run started with Start and
            watched to the end (the live panel redrawing, as a user sees it)
    worker  sra_viz.ui.worker.launch() in this process, polled every 2 s (the app's path without a page)
    cli     `sra-viz distill --config` in a process of its own

Each prints the median ``step_time_s`` of its metrics.jsonl (the first 2 steps left out: warm-up).
Target: app <= 1.2x cli. The paths run one after the other with the same config (the app run's
config.json) and a teacher cache of their own: app (it fills the cache; not in the ratio), cli, worker,
app, cli. The ratio is the 2nd app run against the mean of the two cli runs around it, all on the warm
cache, so load drift on a shared machine shows as the spread of the two cli runs.

    python benchmarks/bench_app_session.py                    # the app's default run, 10 steps
    python benchmarks/bench_app_session.py --steps 6 --set student_k=2
    git worktree add /tmp/before <commit> && python benchmarks/bench_app_session.py --app-root /tmp/before
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import overrides

# the worker row runs as the app runs it: app.py sets this before torch loads (see there)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def median_step(run_dir: Path) -> tuple[float, int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [r["step_time_s"] for r in rows if "step_time_s" in r][2:]
    return (statistics.median(times) if times else float("nan")), len(times)


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_app_session: error: {what} not reached within {seconds:.0f} s")
        time.sleep(0.5)


@contextlib.contextmanager
def served_app(log_dir: Path, app_root: Path = ROOT):
    """`streamlit run app.py` of ``app_root`` on a free port, healthy; yields its URL, stops it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(log_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py"]
        + ["--server.port", str(port), "--server.headless", "true"],
        cwd=app_root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(app_root), "TOKENIZERS_PARALLELISM": "false"},
    )
    url = f"http://localhost:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait(healthy, 120, "a healthy streamlit server")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def distill_page(url: str, runs: Path):
    """Chromium on the app's Distill page, the models loaded and the Runs folder set to ``runs``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/distill", wait_until="networkidle")
        page.get_by_role("heading", name="Distill").first.wait_for(timeout=300_000)
        page.get_by_text("Run folder and seed").click(timeout=600_000)  # after the models have loaded
        folder = page.get_by_label("Runs folder", exact=True)
        folder.fill(str(runs))
        folder.press("Enter")
        _wait(lambda: folder.input_value() == str(runs), 20, "the runs folder typed")
        try:
            yield page
        finally:
            browser.close()


def newest_run(runs: Path) -> Path:
    return max((p for p in runs.iterdir() if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)


def app_run(runs: Path, steps: int, probe_every: int, app_root: Path) -> Path:
    """Start the app, run one session from the Distill page in Chromium, return its run directory."""
    with served_app(runs, app_root) as url, distill_page(url, runs) as page:
        for label, value in (("Steps", str(steps)), ("Probe every N steps", str(probe_every))):
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")
            _wait(lambda box=box, value=value: box.input_value() == value, 20, f"{label} = {value}")
        page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Start").click()
        page.get_by_text(re.compile(r"Run (finished|failed|stopped)")).first.wait_for(timeout=3_600_000)
    return newest_run(runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--probe-every", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument(
        "--app-root", type=Path, default=ROOT, help="checkout whose app.py is served (e.g. an older commit)"
    )
    args = parser.parse_args(argv)

    from sra_viz.distill import DistillConfig, DistillSession
    from sra_viz.distill.runs import read_config
    from sra_viz.models import load_pair
    from sra_viz.ui.worker import launch

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        # a teacher cache of its own (the served app inherits it): the first app run fills it, so every
        # timed run below reads the same warm cache
        os.environ["SRA_VIZ_TEACHER_CACHE"] = str(runs / "teacher_cache")
        first = app_run(runs, args.steps, args.probe_every, args.app_root)
        config = read_config(first)
        fields = {**config.to_dict(), **overrides(args.set)}
        print(
            f"config: {config.student_variant} k={config.student_k}, batch {config.batch_size} x "
            f"{config.max_length}, lr {config.lr:g}, probe {config.probe_size} texts every "
            f"{config.log_every} steps, {config.steps} steps"
        )
        pair = load_pair(config.teacher, config.student, device="cpu")

        (runs / "config.json").write_text(json.dumps(fields))

        def cli_run(name: str) -> Path:
            """`sra-viz distill --config` in a process of its own, as a user runs it."""
            env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
            subprocess.run(
                [sys.executable, "-m", "sra_viz", "distill", "--quiet", "--config", str(runs / "config.json")]
                + ["--out", str(runs / name)],
                check=True,
                env=env,
            )
            return runs / name

        cli_first = cli_run("cli1")
        worker = launch(
            runs / "worker",
            lambda say: DistillSession(
                DistillConfig(**{**fields, "out": str(runs / "worker")}), pair=pair, progress=say
            ),
        )
        while not worker.join(timeout=2.0):
            worker.progress()  # what the page's timer does, without drawing
        second = app_run(runs, args.steps, args.probe_every, args.app_root)
        cli_second = cli_run("cli2")
        results = {
            "app (1st, fills the teacher cache)": first,
            "cli (1st)": cli_first,
            "worker": runs / "worker",
            "app (2nd)": second,
            "cli (2nd)": cli_second,
        }
        medians = {}
        for name, run_dir in results.items():
            medians[name], n = median_step(run_dir)
            print(f"{name:36s} median {medians[name]:.3f} s/step over {n} steps")
    cli = statistics.mean([medians["cli (1st)"], medians["cli (2nd)"]])
    print(
        f"app / cli = {medians['app (2nd)'] / cli:.2f}x (target <= 1.20; the 2nd app run against both cli "
        f"runs, all with the warm teacher cache)   worker / cli = {medians['worker'] / cli:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
