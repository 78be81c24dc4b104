"""The largest |value| of the default teacher's span CoMs at every block over the bundled corpus: how close
the teacher's targets come to float16's largest value (65504), above which a text's targets are rounded
to bfloat16 instead (``sra_viz.distill.teacher_cache.round_targets``).

    python benchmarks/target_range.py                   # 311 texts at 64 tokens, batches of 16
    python benchmarks/target_range.py --texts 50 --max-length 128
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=0, help="first texts of the corpus (0 = all)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    import torch

    from sra_viz.data import load_bundled_corpus
    from sra_viz.distill.batch import collate, prepare_example
    from sra_viz.distill.side_pass import run_side
    from sra_viz.forward import n_layers
    from sra_viz.models import load_pair

    torch.set_grad_enabled(False)
    pair = load_pair()
    t0 = time.perf_counter()
    examples = load_bundled_corpus()
    examples = examples[: args.texts] if args.texts > 0 else examples
    t_tok, s_tok = pair.teacher.tokenizer, pair.student.tokenizer
    items = [prepare_example(e, t_tok, s_tok, args.max_length) for e in examples]
    last = n_layers(pair.teacher) - 1
    layers = list(range(last + 1))
    largest = dict.fromkeys(layers, 0.0)
    for start in range(0, len(items), args.batch_size):
        batch = collate(items[start : start + args.batch_size], t_tok.padding_side or "right", "right")
        masses = dict.fromkeys(layers, last)  # every block pooled with the last block's masses
        out = run_side(pair.teacher, batch, "teacher", layers, masses, "last_token", True, grad=False)
        for layer in layers:
            largest[layer] = max(largest[layer], float(out.centers[layer].abs().amax()))
    print(f"{len(items)} texts at max_length {args.max_length} ({time.perf_counter() - t0:.0f} s)")
    for layer, value in largest.items():
        note = " (after the final norm)" if layer == last else ""
        print(f"block {layer:2d}: max |CoM| {value:9.1f}  = float16 max / {65504 / value:5.1f}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
