"""Where `align_spans` spends its time on one text, beyond the two tokenizers' own calls.

Times each part alone (best of 200 repeats of 500 calls, in µs) on SmolLM2-Gemma: the backend calls,
each side's `encode_bytes` and its pieces (checks around the backend call, token bytes and lengths,
objects), the merge of the two sides' token ends, and `align_spans` end to end.

    .venv/bin/python benchmarks/align_parts.py ["some text"]
"""

from __future__ import annotations

import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_align import CACHE  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog near 2024-05-13, naturally."


def best_us(fn) -> float:
    """Fastest mean time of one call, in µs, over 200 repeats of 500 calls."""
    return min(timeit.repeat(fn, number=500, repeat=200)) / 500 * 1e6


def main() -> None:
    from transformers import AutoTokenizer

    from sra_viz.alignment import align_spans, merge_boundaries
    from sra_viz.tokenization import TextBytes, _backend_and_facts, _encode, _exact_spans, encode_bytes

    text = sys.argv[1] if len(sys.argv) > 1 else TEXT
    load = AutoTokenizer.from_pretrained
    teacher, student = load(f"{CACHE}/models/gemma3-270m"), load(f"{CACHE}/models/smollm2-135m")
    source = TextBytes(text)
    sides = {"teacher": teacher, "student": student}
    encoded = {name: encode_bytes(source, tok) for name, tok in sides.items()}
    print(f"{len(text)} characters; tokens: " + ", ".join(f"{k} {len(v.ends)}" for k, v in encoded.items()))
    total_raw = 0.0
    for name, tok in sides.items():
        backend, facts = _backend_and_facts(tok)
        ids = backend.encode_batch_fast([text], add_special_tokens=False)[0].ids
        raw = best_us(lambda b=backend: b.encode_batch_fast([text], add_special_tokens=False)[0].ids)
        checked = best_us(lambda b=backend, f=facts: _encode(b, text, False, with_offsets=False, facts=f).ids)
        spans = best_us(lambda f=facts, i=ids: _exact_spans(f, i, source))
        whole = best_us(lambda t=tok: encode_bytes(source, t))
        total_raw += raw
        print(
            f"{name}: backend call {raw:.2f} µs; beyond it: checks {checked - raw:.2f}, token bytes, lengths "
            f"and the spelling check {spans:.2f}, the rest (objects) {whole - checked - spans:.2f}"
        )
    merge = best_us(lambda: merge_boundaries(encoded["teacher"], encoded["student"], len(source.data)))
    end_to_end = best_us(lambda: align_spans(text, teacher, student))
    print(
        f"merge {merge:.2f} µs; align_spans {end_to_end:.2f} µs, "
        f"{end_to_end - total_raw:.2f} beyond the backend calls"
    )


if __name__ == "__main__":
    main()
