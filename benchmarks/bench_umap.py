"""PCA and UMAP time on 2,000 real span CoMs of the teacher (Gemma-3-270M, last layer, 640-d).

Every measurement runs in a fresh subprocess: PCA; UMAP with an empty numba cache (cold); UMAP again
with the cache kept (warm, every kernel cached by ``sra_viz.projection.import_umap``); and, for
comparison, umap-learn as shipped (``cache_all_kernels=False``) on the same kept cache.
The 2,000 vectors are computed once (real corpus through the default pair via
``sra_viz.extraction.extract_corpus`` when available, else token hidden states) and cached in
``/tmp/sra_viz_bench_coms.npy``. Targets: PCA <= 1 s; UMAP fit <= 15 s with a warm JIT cache.

Run: ``.venv/bin/python benchmarks/bench_umap.py [--rows 2000] [--skip-shipped]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path("/tmp/sra_viz_bench_coms.npy")

PREPARE = r"""
import json, sys, time
import numpy as np
rows, out = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
source = ""
try:
    from sra_viz.data import load_bundled_corpus
    texts = [getattr(t, "text", t) for t in load_bundled_corpus()]
    source = "bundled corpus"
except Exception:
    import inspect, json as js, collections, textwrap, argparse, pathlib
    texts = [inspect.getdoc(m) for m in (js, collections, textwrap, argparse, pathlib, inspect)]
    source = "stdlib docstrings"
texts = [t for t in texts if t and t.strip()]
try:
    from sra_viz.extraction import extract_corpus
    from sra_viz.models import load_pair
    pair = load_pair(device="cpu")
    got, X = 0, []
    for i in range(0, len(texts), 8):
        corpus = extract_corpus(texts[i:i + 8], pair, max_tokens=256)
        X.append(corpus.teacher_centers[-1]); got += len(X[-1])
        if got >= rows:
            break
    X = np.concatenate(X)
    kind = f"span CoMs (extract_corpus) of {source}"
except Exception as exc:
    import torch
    from sra_viz.models import load_model
    lm = load_model("gemma3-270m", device="cpu")
    X = []
    with torch.no_grad():
        for t in texts:
            ids = lm.tokenizer(t, return_tensors="pt", truncation=True, max_length=512)
            h = lm.model(**ids, output_hidden_states=True).hidden_states[-1][0, 1:]
            X.append(h.float().numpy())
            if sum(len(x) for x in X) >= rows:
                break
    X = np.concatenate(X)
    kind = f"token hidden states of {source} (features unavailable: {type(exc).__name__})"
np.save(out, X[:rows].astype(np.float32))
print(json.dumps({"rows": int(min(rows, len(X))), "dim": int(X.shape[1]), "kind": kind,
                  "seconds": round(time.perf_counter() - t0, 1)}))
"""

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from sra_viz import geometry, projection
X = np.load(sys.argv[2])
mode = sys.argv[1]
row = {"mode": mode, "rows": len(X)}
if mode == "pca":
    t1 = time.perf_counter(); projection.project_pca(X); row["fit_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    projection.project_pca(X[:200], fit_on=X)
    row["transform_s"] = time.perf_counter() - t1
    row["import_s"] = t1 - t0 - row["fit_s"]
else:
    t1 = time.perf_counter()
    projection.import_umap(cache_all_kernels=(mode != "umap-shipped"))
    row["import_s"] = time.perf_counter() - t1
    epochs = None if mode == "umap-500" else 200
    proj = projection.UmapProjector(random_state=0, n_epochs=epochs)
    t1 = time.perf_counter(); proj.fit(X[200:]); row["fit_s"] = time.perf_counter() - t1
    t1 = time.perf_counter(); proj.transform(X[:200]); row["transform_s"] = time.perf_counter() - t1
row["total_s"] = time.perf_counter() - t0
print(json.dumps(row))
"""


def _run(code: str, *args: str, env_cache: str | None = None) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if env_cache is not None:
        env["NUMBA_CACHE_DIR"] = env_cache
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({args}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--skip-shipped", action="store_true", help="skip the umap-as-shipped comparison")
    args = parser.parse_args()
    if not CACHE.exists() or len(__import__("numpy").load(CACHE)) < args.rows:
        info = _run(PREPARE, str(args.rows), str(CACHE))
        print(f"computed {info['rows']} x {info['dim']} {info['kind']} in {info['seconds']} s -> {CACHE}")
    else:
        print(f"using cached vectors {CACHE}")
    load_before = os.getloadavg()[0]
    rows = []
    rows.append(("PCA (numpy SVD/eigh)", _run(CHILD, "pca", str(CACHE))))
    with tempfile.TemporaryDirectory(prefix="sra_viz_numba_") as cache_dir:
        rows.append(("UMAP cold (empty numba cache)", _run(CHILD, "umap", str(CACHE), env_cache=cache_dir)))
        rows.append(("UMAP warm (all kernels cached)", _run(CHILD, "umap", str(CACHE), env_cache=cache_dir)))
        rows.append(("UMAP warm, second process", _run(CHILD, "umap", str(CACHE), env_cache=cache_dir)))
        rows.append(
            ("UMAP warm, n_epochs=None (500)", _run(CHILD, "umap-500", str(CACHE), env_cache=cache_dir))
        )
        if not args.skip_shipped:
            with tempfile.TemporaryDirectory(prefix="sra_viz_numba_shipped_") as shipped_dir:
                _run(CHILD, "umap-shipped", str(CACHE), env_cache=shipped_dir)  # fill the shipped cache
                rows.append(
                    (
                        "UMAP as shipped, cache kept",
                        _run(CHILD, "umap-shipped", str(CACHE), env_cache=shipped_dir),
                    )
                )
    n = rows[0][1]["rows"]
    print(f"\n{n} vectors; fit on {n - 200} (UMAP) / {n} (PCA), transform 200; seconds per fresh process")
    print("UMAP: seeded (single-threaded), cosine, n_neighbors=15, n_epochs=200 unless said")
    print(
        f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} "
        "cores"
    )
    print(f"{'case':<34} {'import':>7} {'fit':>7} {'transform':>10} {'total':>7}")
    for name, r in rows:
        print(
            f"{name:<34} {r['import_s']:>7.2f} {r['fit_s']:>7.2f} {r['transform_s']:>10.2f} "
            f"{r['total_s']:>7.2f}"
        )
    pca, warm = rows[0][1], rows[2][1]
    print(f"\ntarget PCA fit <= 1 s: {'met' if pca['fit_s'] <= 1 else 'MISSED'} ({pca['fit_s']:.3f} s)")
    print(
        f"target UMAP fit <= 15 s warm: {'met' if warm['fit_s'] <= 15 else 'MISSED'} ({warm['fit_s']:.1f} s)"
    )


if __name__ == "__main__":
    main()
