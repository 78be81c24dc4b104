"""Load time and peak RSS of each default model, from the converted folder and from the GGUF.

Each measurement runs in a fresh subprocess so RSS and caches do not leak between them.
Run: ``.venv/bin/python benchmarks/bench_load.py``
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from sra_viz import fetch, paths
from sra_viz.models import load_model
name, source = sys.argv[1], sys.argv[2]
spec = name if source == "folder" else str(paths.gguf_dir() / name / fetch.DEFAULT_MODELS[name].gguf_name)
t0 = time.perf_counter()
lm = load_model(spec, device="cpu")
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"model": name, "source": source, "load_s": round(seconds, 2), "peak_rss_mib": round(rss)}))
"""


def main() -> None:
    from sra_viz.fetch import fetch_all

    fetch_all(include_test_tokenizers=False)
    print(f"{'model':<14} {'source':<7} {'load s':>7} {'peak RSS MiB':>13}")
    for source in ("folder", "gguf"):
        for name in ("smollm2-135m", "gemma3-270m"):
            out = subprocess.run([sys.executable, "-c", CHILD, name, source], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name:<14} {source:<7} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{row['model']:<14} {row['source']:<7} {row['load_s']:>7.2f} {row['peak_rss_mib']:>13}")


if __name__ == "__main__":
    main()
