"""How much the whole span-feature analysis costs over running the two models bare.

Baseline: the two bare forward passes a user would run, ``model(input_ids)`` on each default model
(full causal LM, logits included, no hidden states/attentions, ``torch.no_grad``). Analysis:
``analyze_text`` = alignment + forward with the last layer's hidden states and attention + masses +
CoMs + saliency. Also printed: the backbones alone (no LM head), and Hugging Face's own
``output_hidden_states=True, output_attentions=True`` pass. Medians of interleaved repeats after a warm-up.
Target: analysis / baseline <= 1.15.

Run: .venv/bin/python benchmarks/bench_features.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from sra_viz.extraction import analyze_text
from sra_viz.models import load_pair

TEXT = (
    "Knowledge distillation trains a small student model to imitate a larger teacher. When the two models "
    "use different tokenizers, their tokens do not line up, so the losses that compare them token by token "
    "break down. Span Representation Alignment cuts the text into spans that both tokenizers agree on, "
    "pools each model's hidden states inside every span with weights taken from attention, and aligns the "
    "resulting centers of mass. The geometry of the spans, not the raw tokens, is what the student learns "
    "to match; salient spans count more than filler. The same recipe works for any pair of causal language "
    "models that can return their attentions."
)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    pair = load_pair(device="cpu")
    print(f"peak RSS after loading the pair: {_rss_mib():.0f} MiB; torch threads: {torch.get_num_threads()}")
    ids = {
        side: torch.tensor([getattr(pair, side).tokenizer(TEXT).input_ids]) for side in ("teacher", "student")
    }
    print(
        f"text: {len(TEXT)} characters, teacher {ids['teacher'].shape[1]} tokens, student "
        f"{ids['student'].shape[1]} tokens"
    )

    def bare():
        with torch.no_grad():
            for side in ("teacher", "student"):
                getattr(pair, side).model(ids[side])

    def backbones():
        with torch.no_grad():
            for side in ("teacher", "student"):
                getattr(pair, side).model.get_decoder()(ids[side])

    def hf_all_outputs():
        with torch.no_grad():
            for side in ("teacher", "student"):
                getattr(pair, side).model(ids[side], output_hidden_states=True, output_attentions=True)

    def analysis():
        analyze_text(TEXT, pair)

    backbones()  # pages the memory-mapped weights in (all but most of the embedding tables)
    print(f"peak RSS after one bare backbone pass (weights paged in): {_rss_mib():.0f} MiB")
    analysis()  # alone, before the cases that build full logits or keep every attention
    print(f"peak RSS after one analysis: {_rss_mib():.0f} MiB")
    cases = {
        "bare forward x2 (baseline)": bare,
        "backbones only x2": backbones,
        "HF output_hidden_states+attentions x2": hf_all_outputs,
        "analyze_text (whole analysis)": analysis,
    }
    for fn in cases.values():  # warm-up
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(_timed(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["bare forward x2 (baseline)"]
    for name, value in medians.items():
        spread = f"{min(times[name]) * 1000:.0f}-{max(times[name]) * 1000:.0f}"
        print(f"{name:40s} median {value * 1000:7.1f} ms  (range {spread} ms)  x{value / base:.2f}")
    best = min(times["analyze_text (whole analysis)"]) / min(times["bare forward x2 (baseline)"])
    print(f"best-of-{args.repeats} ratio analysis / bare forward (less sensitive to a busy CPU): {best:.2f}")
    ratio = medians["analyze_text (whole analysis)"] / base
    print(
        f"ratio analysis / bare forward: {ratio:.2f} (target <= 1.15: "
        f"{'met' if ratio <= 1.15 else 'NOT met'})"
    )
    strict = medians["analyze_text (whole analysis)"] / medians["backbones only x2"]
    print(f"ratio analysis / backbones only (no LM head, stricter): {strict:.2f}")
    print(f"peak RSS at the end (all cases, incl. full logits and all attentions): {_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
