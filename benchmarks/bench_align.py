"""Span alignment: ours vs TRL's cross-tokenizer aligner, speed and exactness, on real tokenizer pairs.

For a few hundred deterministic varied texts (prose, code, numbers, emoji, CJK, odd whitespace,
combining marks, literal special tokens) and the pairs SmolLM2-Gemma and SmolLM2-GPT-2 it times,
end to end from the text (both tokenizations included), best of 3 per text, median over texts:

- ours: ``sra_viz.alignment.align_spans``: both tokenizations with each token's byte end as a list
  (its starts too where the tokens do not tile the text), the span boundaries and each span's token
  ranges; `Span` objects, per-token ``(start, end)`` tuples, a tiling's starts and token strings are
  built on first read (the "+spans" column builds the Span objects);
- TRL 1.16: ``ULDLoss._align_by_byte_offsets`` fed by ``encode_with_byte_offsets`` for byte-level
  tokenizers and, for Gemma (which TRL's builder refuses), by character offsets turned into bytes.

"tok/TRL" is the two tokenizers' backend calls alone (ids only) against TRL: the floor under any
aligner that tokenizes both sides from the text.

A text counts as wrong when a method's groups differ from the ideal partition of its own tokens,
computed independently from each token's bytes (GPT-2 byte table, ``<0xNN>``, ``▁`` = space).
Finally it times one 1 MB text: tokenization vs. the alignment work proper.

    .venv/bin/python benchmarks/bench_align.py [--texts 240]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import warnings

# tests/_truth.py judges the alignments: the repository root on the path, wherever this is run from
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

CACHE = os.path.expanduser(os.environ.get("SRA_VIZ_HOME", "~/.cache/sra_viz"))

WORDS = (
    "the of and to in is was for on that with as by at from his her they which this be are an or model "
    "teacher student token span align distillation knowledge attention hidden state center mass quickly "
    "naturally geometry vocabulary tokenizer sentence paragraph language learning gradient"
).split()
CODE = [
    "def f(x):\n    return x ** 2 + 3 * x - 1\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
    "if __name__ == '__main__':\n\tmain(sys.argv[1:])\n",
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;\n",
    "const xs = [1, 2, 3].map((v) => v * 2); // doubled\n",
    "    self.cache: dict[str, list[int]] = {}\r\n",
    'fn main() { println!("{:?}", vec![1u8, 2, 3]); }\n',
    "<div class=\"row\"><span id='a'>&nbsp;x</span></div>\n",
]
EMOJI = ["👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "👍🏽", "❤️", "🏳️‍🌈", "😀", "🧑🏿‍💻", "✈︎", "🤖", "👩‍❤️‍💋‍👨"]
CJK = [
    "東京は日本の首都です。",
    "北京是中国的首都。",
    "서울은 한국의 수도입니다.",
    "漢字とかなカナ",
    "𠀋𡈽𡌛",
]
SCRIPTS = ["नमस्ते दुनिया", "สวัสดีชาวโลก", "مرحبا بالعالم", "שָׁלוֹם עוֹלָם", "Ελληνικά", "Привет, мир", "ሰላም ልዑል"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "Z\u0351\u036b\u0343", "o\u0328\u0304", "\u1100\u1161\u11a8"]
SPACES = ["  ", "\t", "\r\n", "\n\n\n", "\u00a0", "\u3000", "\u200b", "\u2009", " \n ", "\u2028", "    "]
SPECIALS = [
    "<bos>",
    "<eos>",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<start_of_turn>",
    "[CLS]",
    "<0x41>",
    "▁",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic varied texts, 8 kinds in turn."""
    rng = random.Random(seed)

    def prose(k):
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + rng.choice([".", "!", "?", "..."])

    def number():
        return rng.choice(
            [
                str(rng.randrange(10 ** rng.randint(1, 30))),
                f"{rng.random() * 1e6:,.3f}",
                f"{rng.randint(1900, 2100)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                f"${rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
                f"{rng.random():.2e}",
            ]
        )

    kinds = [
        lambda: " ".join(prose(rng.randint(5, 25)) for _ in range(rng.randint(1, 5))),
        lambda: "".join(rng.choice(CODE) for _ in range(rng.randint(1, 4))),
        lambda: " ".join(number() for _ in range(rng.randint(3, 15))),
        lambda: "".join(
            rng.choice(EMOJI) + rng.choice(["", " ", "x", "\u200d"]) for _ in range(rng.randint(2, 12))
        ),
        lambda: "".join(rng.choice(CJK + [prose(3)]) for _ in range(rng.randint(1, 6))),
        lambda: "".join(rng.choice(SPACES) + rng.choice(WORDS) for _ in range(rng.randint(3, 20))),
        lambda: " ".join(
            rng.choice(COMBINING + SCRIPTS) + rng.choice(WORDS) for _ in range(rng.randint(2, 10))
        ),
        lambda: "".join(
            rng.choice(SPECIALS) + rng.choice([" ", "", "\n"]) + prose(2) for _ in range(rng.randint(1, 6))
        ),
    ]
    return [kinds[i % len(kinds)]() for i in range(n)]


def token_bytes_truth(tokenizer, ids: list[int], text: str) -> list[bytes]:
    """Each token's bytes from its string alone (tests/_truth.py, independent of sra_viz)."""
    from tests._truth import token_pieces

    return token_pieces(tokenizer, tokenizer.convert_ids_to_tokens(ids), text)


def ideal_groups(ends_a: list[int], ends_b: list[int]) -> list[tuple[range, range]]:
    """The finest common partition of two token sequences given their cumulative byte ends."""
    groups, i, j, start_a, start_b = [], 0, 0, 0, 0
    common = set(ends_a) & set(ends_b)
    for end in sorted(common):
        while i < len(ends_a) and ends_a[i] <= end:
            i += 1
        while j < len(ends_b) and ends_b[j] <= end:
            j += 1
        if i > start_a and j > start_b:
            groups.append((range(start_a, i), range(start_b, j)))
            start_a, start_b = i, j
    return groups


def cumulative(pieces: list[bytes]) -> list[int]:
    out, total = [], 0
    for p in pieces:
        total += len(p)
        out.append(total)
    return out


def best_of(fn, *args, repeat: int = 3) -> float:
    """Fastest of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def trl_side(tok, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and byte offsets as a TRL user gets them: TRL's builder, or char offsets made bytes."""
    from trl.experimental.utils import encode_with_byte_offsets, is_byte_level_tokenizer

    if is_byte_level_tokenizer(tok.backend_tokenizer):
        return encode_with_byte_offsets(tok.backend_tokenizer, [text])[0]
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    char_to_byte = [0]
    for ch in text:
        char_to_byte.append(char_to_byte[-1] + len(ch.encode("utf-8")))
    return enc["input_ids"], [(char_to_byte[s], char_to_byte[e]) for s, e in enc["offset_mapping"]]


def trl_align(teacher, student, text: str):
    """TRL 1.16's cross-tokenizer grouping, end to end from the text (None when TRL gives up)."""
    from trl.experimental.gold.gold_trainer import ULDLoss

    try:
        (s_ids, s_offs), (t_ids, t_offs) = trl_side(student, text), trl_side(teacher, text)
    except ValueError:  # offsets TRL cannot make monotone
        return None
    s_groups, t_groups = ULDLoss._align_by_byte_offsets(s_offs, t_offs)
    return t_ids, s_ids, t_groups, s_groups


def ours_align(teacher, student, text: str):
    from sra_viz.alignment import align_spans

    return align_spans(text, teacher, student)


def tokenizers_only(teacher, student, text: str):
    """The two backend calls alone (ids, no byte ranges, no spans): the floor under any aligner."""
    return [
        tok.backend_tokenizer.encode_batch_fast([text], add_special_tokens=False)[0].ids
        for tok in (teacher, student)
    ]


def ours_align_spans(teacher, student, text: str):
    return ours_align(teacher, student, text).spans


def ours_wrong(teacher, student, text: str) -> bool:
    """Our spans differ from the ideal partition of our own tokens."""
    al = ours_align(teacher, student, text)
    t_real = [i for i, s in enumerate(al.teacher.byte_spans) if s is not None]
    s_real = [i for i, s in enumerate(al.student.byte_spans) if s is not None]
    t_ends = cumulative(token_bytes_truth(teacher, [al.teacher.ids[i] for i in t_real], text))
    s_ends = cumulative(token_bytes_truth(student, [al.student.ids[i] for i in s_real], text))
    t_pos, s_pos = {i: k for k, i in enumerate(t_real)}, {i: k for k, i in enumerate(s_real)}
    ours = [
        (
            range(t_pos[sp.teacher_start], t_pos[sp.teacher_end - 1] + 1),
            range(s_pos[sp.student_start], s_pos[sp.student_end - 1] + 1),
        )
        for sp in al.spans
    ]
    return ours != ideal_groups(t_ends, s_ends)


def trl_wrong(teacher, student, text: str) -> bool:
    """TRL's groups differ from the ideal partition of TRL's own tokens (or TRL gave up)."""
    result = trl_align(teacher, student, text)
    if result is None:
        return True
    t_ids, s_ids, t_groups, s_groups = result
    t_ends = cumulative(token_bytes_truth(teacher, t_ids, text))
    s_ends = cumulative(token_bytes_truth(student, s_ids, text))
    theirs = [
        (range(tg[0], tg[-1] + 1), range(sg[0], sg[-1] + 1)) if tg and sg else None
        for tg, sg in zip(t_groups, s_groups, strict=True)
    ]
    return theirs != ideal_groups(t_ends, s_ends)


def time_one_megabyte(texts: list[str], teacher, student) -> str:
    """Tokenization vs. alignment work on one ~1 MB text made of the varied texts."""
    from sra_viz.alignment import align_spans, merge_boundaries
    from sra_viz.tokenization import TextBytes, encode_bytes

    big = "".join(texts)
    big = (big * (1_000_000 // len(big.encode()) + 1)).encode()[:1_000_000].decode(errors="ignore")
    source = TextBytes(big)
    t0 = time.perf_counter()
    t_enc, s_enc = encode_bytes(source, teacher), encode_bytes(source, student)
    t1 = time.perf_counter()
    merge_boundaries(t_enc, s_enc, len(source.data))
    t2 = time.perf_counter()
    al = align_spans(big, teacher, student)
    t3 = time.perf_counter()
    spans = al.spans
    t4 = time.perf_counter()
    al.token_to_span("teacher"), al.token_to_span("student")
    t5 = time.perf_counter()
    return (
        f"1 MB text ({len(source.data):,} bytes; {len(t_enc.real):,} Gemma / {len(s_enc.real):,} SmolLM2 "
        "tokens; "
        f"{len(spans):,} spans)\n  tokenization, both sides: {t1 - t0:.2f} s\n"
        f"  alignment work: merge + token ranges {t2 - t1:.3f} s, Span objects {t4 - t3:.3f} s, "
        f"token_to_span both sides {t5 - t4:.3f} s\n  align_spans end to end: {t3 - t2:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=240)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    load = AutoTokenizer.from_pretrained
    smol = load(f"{CACHE}/models/smollm2-135m")
    pairs = {
        "SmolLM2-Gemma": (load(f"{CACHE}/models/gemma3-270m"), smol),
        "SmolLM2-GPT-2": (load(f"{CACHE}/tokenizers/gpt2"), smol),
    }
    texts = make_texts(args.texts)
    from sra_viz.tokenization import spelled_ends, spelled_ends_python

    loops = "Python (built without a compiler)" if spelled_ends is spelled_ends_python else "compiled"
    print(f"{len(texts)} texts, {sum(len(t) for t in texts) / len(texts):.0f} characters on average")
    print(f"the aligner's per-token loops: {loops} (sra_viz/_span_ends.c)")
    header = (
        f"{'pair':<15} {'ours ms':>8} {'+spans ms':>10} {'TRL ms':>8} {'ours/TRL':>9} {'tok/TRL':>8} "
        f"{'ours wrong':>11} {'TRL wrong':>10}"
    )
    print(header + "\n" + "-" * len(header))
    for name, (teacher, student) in pairs.items():
        times: dict[str, list[float]] = {"ours": [], "spans": [], "trl": [], "tok": []}
        for text in texts:
            ours_align(teacher, student, text)  # warm both tokenizers' caches alike
            trl_align(teacher, student, text)
            times["ours"].append(best_of(ours_align, teacher, student, text))
            times["spans"].append(best_of(ours_align_spans, teacher, student, text))
            times["trl"].append(best_of(trl_align, teacher, student, text))
            times["tok"].append(best_of(tokenizers_only, teacher, student, text))
        ours_ms, spans_ms, trl_ms, tok_ms = (
            statistics.median(times[k]) * 1e3 for k in ("ours", "spans", "trl", "tok")
        )
        wrong = (
            sum(ours_wrong(teacher, student, t) for t in texts),
            sum(trl_wrong(teacher, student, t) for t in texts),
        )
        print(
            f"{name:<15} {ours_ms:>8.3f} {spans_ms:>10.3f} {trl_ms:>8.3f} {ours_ms / trl_ms:>9.2f} "
            f"{tok_ms / trl_ms:>8.2f} "
            f"{wrong[0]:>11} {wrong[1]:>10}"
        )
    print()
    print(time_one_megabyte(texts, *pairs["SmolLM2-Gemma"]))


if __name__ == "__main__":
    main()
