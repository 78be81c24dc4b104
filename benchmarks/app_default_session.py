"""The app's default distillation session as a user runs it: does it show the probe measures moving, and
how long does it take?

Starts `streamlit run app.py`, opens the Distill page in headless Chromium, sets only the Runs folder
(every other control keeps the app's default, ``APP_DEFAULTS`` in sra_viz/ui/pages/distill.py), presses
Start and waits for "Run finished". It prints the wall time from Start to the end (set-up, steps, probes,
held-out evaluation before and after), the median s/step, and each probe measure at step 0 and at the
end with its relative change. It saves screenshots of the "Change since step 0" views at the end and,
through the reopened run's step picker, at step 0:

    <shots>/distill_default_change_end.png     <shots>/distill_default_change_step0.png

    python benchmarks/app_default_session.py                       # screenshots into docs/screenshots
    python benchmarks/app_default_session.py --shots /tmp/shots
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_app_session import ROOT, _wait, distill_page, newest_run, served_app

MEASURES = ("probe_cos", "probe_cka", "probe_gram_distance", "probe_retrieval", "heldout_ppl")


def probe_rows(runs: Path) -> list[dict]:
    """The probe rows on disk so far of the newest run under ``runs`` (none before it exists)."""
    metrics = [p / "metrics.jsonl" for p in runs.iterdir() if (p / "metrics.jsonl").is_file()]
    if not metrics:
        return []
    lines = max(metrics, key=lambda m: m.stat().st_mtime).read_text().splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            continue
    return [r for r in rows if "probe_cka" in r]


def report(run_dir: Path, wall_s: float, seen: dict[int, float]) -> None:
    """Wall time, median s/step and each probe measure at step 0 and at the end, from metrics.jsonl;
    then each probe row with the seconds after Start at which it was on disk."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((run_dir / "config.json").read_text())
    steps = [r["step_time_s"] for r in rows if "step_time_s" in r]
    probes = [r for r in rows if "probe_cos" in r]
    first, last = probes[0], probes[-1]
    print(
        f"default app session: {config['method']} {config['student_variant']} k={config['student_k']}, "
        f"{config['steps']} steps, batch {config['batch_size']} x {config['max_length']}, "
        f"lr {config['lr']:g}, "
        f"probe {config['probe_size']} texts every {config['log_every']} steps, held-out "
        f"{config['eval_size']} examples"
    )
    print(
        f"Start to 'Run finished': {wall_s:.0f} s; median {statistics.median(steps):.2f} s/step "
        f"over {len(steps)} steps"
    )
    for m in MEASURES:
        if m in first and m in last:
            a, b = float(first[m]), float(last[m])
            rel = f"{(b - a) / abs(a):+.1%}" if a else "n/a"
            print(f"  {m:22s} step {first['step']:>3}: {a:.4g}   step {last['step']:>3}: {b:.4g}   ({rel})")
    print("probe rows as they reached the disk (s after Start): step, CKA, Gram distance, cosine")
    for r in probes:
        at = seen.get(int(r["step"]))
        when = f"{at:5.0f} s" if at is not None else "    ? s"
        print(
            f"  {when}  step {r['step']:>3}  CKA {r['probe_cka']:.4f}  Gram {r['probe_gram_distance']:.4f}  "
            f"cos {r['probe_cos']:.4f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.shots.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        with served_app(runs) as url, distill_page(url, runs) as page:
            main_block = page.get_by_test_id("stMainBlockContainer")
            main_block.get_by_role("button", name="Start").click()
            t0 = time.monotonic()
            seen: dict[int, float] = {}  # probe step -> seconds after Start when its row was on disk
            while not page.get_by_text("Run finished").count():
                if time.monotonic() - t0 > 3600:
                    raise SystemExit("app_default_session: error: the run did not finish within an hour")
                for row in probe_rows(runs):
                    seen.setdefault(int(row["step"]), time.monotonic() - t0)
                page.wait_for_timeout(1000)
            wall = time.monotonic() - t0
            page.get_by_text("Distance of each span to its teacher span").first.wait_for(timeout=120_000)
            time.sleep(1.5)  # plotly's drawing, before the picture
            page.get_by_test_id("stTabs").first.screenshot(
                path=str(args.shots / "distill_default_change_end.png"), timeout=120_000
            )
            # the reopened run's step picker at step 0: the views' reference, every change 0
            slider = page.get_by_role("slider").last
            slider.focus()
            slider.press("Home")
            _wait(lambda: page.get_by_text("step 0: mean").count() >= 2, 120, "the views at step 0")
            time.sleep(1.5)
            page.get_by_test_id("stTabs").last.screenshot(
                path=str(args.shots / "distill_default_change_step0.png"), timeout=120_000
            )
        report(newest_run(runs), wall, seen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
