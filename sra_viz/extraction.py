"""Span features of texts from real models: options, long-text windows, batching, and the entry points
``extract_features``, ``analyze_text`` and ``extract_corpus``.

For each side (teacher, student) one forward pass keeps the chosen layers' hidden states and their
attentions: by default each layer's CoMs are pooled with the masses of that layer's own attention
(per-layer masses, as the method does); ``mass_layer=k`` pools every layer with block k's masses.
Layer ``ℓ`` = output of block ``ℓ`` (``-1`` = last, post-final-norm like Hugging Face); see
:mod:`sra_viz.forward`. The tensor math (masses, CoMs, saliency) is :mod:`sra_viz.features`.

Example:
    >>> feats = analyze_text("The cat sat.", load_pair())  # doctest: +SKIP
    >>> feats.to_frame()[["text", "teacher_mass", "student_mass", "saliency"]]  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import SraVizError
from .features import MASS_MODES, saliency_weights, span_centers, span_masses, token_mass
from .forward import forward_features, n_layers, resolve_layer

# ----------------------------------------------------------------------------- windows of spans


@dataclass
class Piece:
    """One forward sequence: a window of spans [lo, hi) with the token positions it feeds per side."""

    item: int
    lo: int
    hi: int
    positions: dict[str, list[int]]


def _leading_specials(tokenized) -> int:
    n = 0
    while n < len(tokenized.ids) and tokenized.byte_spans[n] is None:
        n += 1
    return n


def _slice_tokenized(tokenized, end: int, text: str):
    """The first `end` tokens (every per-token list field is cut the same way)."""
    n = len(tokenized.ids)
    cut = {
        f.name: getattr(tokenized, f.name)[:end]
        for f in fields(tokenized)
        if isinstance(getattr(tokenized, f.name), list) and len(getattr(tokenized, f.name)) == n
    }
    return replace(tokenized, text=text, **cut)


def plan_windows(alignment, max_tokens: int, windowed: bool, item: int = 0) -> tuple[Any, list[Piece], str]:
    """Windows of whole spans that fit `max_tokens` on both sides; truncates unless windowed."""
    sides = ("teacher", "student")
    tok = {s: getattr(alignment, s) for s in sides}
    if all(len(tok[s].ids) <= max_tokens for s in sides):
        return (
            alignment,
            [Piece(item, 0, len(alignment.spans), {s: list(range(len(tok[s].ids))) for s in sides})],
            "",
        )
    lead = {s: _leading_specials(tok[s]) for s in sides}
    ends = {s: [getattr(sp, f"{s}_end") for sp in alignment.spans] for s in sides}
    start = dict(lead)
    pieces, lo, n_spans = [], 0, len(alignment.spans)
    while lo < n_spans:
        hi = lo
        while hi < n_spans and all(ends[s][hi] - start[s] + lead[s] <= max_tokens for s in sides):
            hi += 1
        if hi == lo:
            span = alignment.spans[lo]
            raise SraVizError(
                f"span {lo} ({span.text[:40]!r}, characters {span.char_start}..{span.char_end}) does not fit "
                f"in max_tokens={max_tokens} together with the tokens before it; raise max_tokens"
            )
        stop = {s: ends[s][hi - 1] for s in sides}
        if hi == n_spans:  # trailing tokens in no span (e.g. an EOS) join the last window when they fit
            stop = {
                s: len(tok[s].ids) if len(tok[s].ids) - start[s] + lead[s] <= max_tokens else stop[s]
                for s in sides
            }
        positions = {s: list(range(lead[s])) + list(range(start[s], stop[s])) for s in sides}
        pieces.append(Piece(item, lo, hi, positions))
        if not windowed:
            break
        start, lo = {s: ends[s][hi - 1] for s in sides}, hi
    sizes = ", ".join(f"{s} {len(tok[s].ids)} tokens" for s in sides)
    if windowed:
        return alignment, pieces, ""
    hi = pieces[0].hi
    end_char = alignment.spans[hi - 1].char_end
    message = (
        f"text truncated to its first {hi} of {n_spans} spans ({end_char} of {len(alignment.text)} "
        f"characters): it has {sizes}, more than max_tokens={max_tokens}; pass windowed=True to cover it all"
    )
    text = alignment.text[:end_char]
    cut = replace(
        alignment,
        text=text,
        spans=list(alignment.spans[:hi]),
        **{s: _slice_tokenized(tok[s], len(pieces[0].positions[s]), text) for s in sides},
    )
    return cut, pieces, message


# ----------------------------------------------------------------------------- results


@dataclass
class SideFeatures:
    """One model's view of a text. Tensors are float32 on CPU; L = tokens incl. specials, N = spans."""

    model: str
    tokens: list[str]
    token_mass: torch.Tensor  # (L,) sums to 1 over non-special tokens (0 on specials)
    span_mass: torch.Tensor  # (N,)
    centers: dict[int, torch.Tensor]  # layer as asked -> (N, D)
    block_of: dict[int, int]  # layer as asked -> block index 0..n_layers-1
    mass_layer: int  # block whose attention gave token_mass / span_mass (the deepest asked by default)
    attention: torch.Tensor | None = None  # (H, L, L) of the mass layer (single window only)
    hidden: dict[int, torch.Tensor] | None = None  # layer as asked -> (L, D), when keep_hidden
    span_masses: dict[int, torch.Tensor] = field(
        default_factory=dict
    )  # layer as asked -> (N,) pooling its CoMs


@dataclass
class SpanFeatures:
    """Both sides' span features for one text plus the teacher-derived saliency (N,)."""

    alignment: Any  # SpanAlignment (truncated when `truncated`)
    teacher: SideFeatures
    student: SideFeatures
    saliency: torch.Tensor  # (N,)
    mass_mode: str = "last_token"
    truncated: bool = False
    message: str = ""
    windows: int = 1

    def __len__(self) -> int:
        return len(self.alignment.spans)

    def to_frame(self) -> pd.DataFrame:
        """One row per span: id, text, offsets, both span masses, saliency, token counts.

        Example:
            >>> analyze_text("a b", pair).to_frame().columns[:3].tolist()  # doctest: +SKIP
            ['span_id', 'text', 'char_start']
        """
        spans = self.alignment.spans
        return pd.DataFrame(
            {
                "span_id": np.arange(len(spans)),
                "text": [s.text for s in spans],
                "char_start": [s.char_start for s in spans],
                "char_end": [s.char_end for s in spans],
                "teacher_mass": self.teacher.span_mass.numpy(),
                "student_mass": self.student.span_mass.numpy(),
                "saliency": self.saliency.numpy(),
                "n_teacher_tokens": [s.teacher_end - s.teacher_start for s in spans],
                "n_student_tokens": [s.student_end - s.student_start for s in spans],
            }
        )


@dataclass
class CorpusFeatures:
    """Span features of many texts: a tidy frame and CoM matrices row-aligned with it."""

    frame: pd.DataFrame  # one row per span (text_id, span_id, text, masses, saliency, token counts)
    teacher_centers: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> (S, D_T) float32
    student_centers: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> (S, D_S) float32
    messages: dict[int, str] = field(default_factory=dict)  # text_id -> truncation message


# ----------------------------------------------------------------------------- planning


@dataclass
class FeatureOptions:
    """What extract_features computes; every field is also a keyword of extract_features/analyze_text."""

    layers: Sequence[int] | int = (-1,)  # blocks whose CoMs are kept, both sides (-1 = last, post-norm)
    teacher_layers: Sequence[int] | int | None = None  # overrides `layers` for the teacher
    student_layers: Sequence[int] | int | None = None  # overrides `layers` for the student
    mass_mode: str = "last_token"  # "last_token" (SRA), "received" or "uniform" (mean pooling)
    head: int | None | tuple = None  # one attention head for the mass, or None = sum of heads; or (T, S)
    mass_layer: int | None | tuple = (
        None  # block whose attention gives every layer's masses; None = each layer its own; or (T, S)
    )
    max_tokens: int = 512  # longest sequence fed to a model; longer texts are truncated or windowed
    keep_attention: bool = True  # keep the (H, L, L) attention of the mass layer in SideFeatures
    keep_hidden: bool = False  # keep the (L, D) hidden states of the asked layers in SideFeatures
    windowed: bool = False  # cover long texts with consecutive windows of spans instead of truncating
    saliency_power: float = 1.0  # p in ŵ_k = (M_k^T)^p / Σ (M_k'^T)^p


_OPTION_NAMES = tuple(f.name for f in fields(FeatureOptions))
_ALIGN_OPTION_NAMES = ("granularity", "prompt_end", "add_special_tokens")  # keywords of align_spans


@dataclass
class _Resolved:
    """FeatureOptions checked against the pair, one value per side."""

    layers: dict[str, tuple[int, ...]]
    mass_layer: dict[str, int]  # block of token_mass / span_mass / attention in the results
    mass_of: dict[str, dict[int, int]]  # layer as asked -> block whose attention pools its CoMs
    head: dict[str, int | None]
    options: FeatureOptions


def _per_side(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise SraVizError(f"{name} must be one value or a (teacher, student) pair, got {value!r}")
        return {"teacher": value[0], "student": value[1]}
    return {"teacher": value, "student": value}


def _split(options: dict) -> tuple[FeatureOptions, dict]:
    """Feature options, and the rest (passed to align_spans when a text is given)."""
    ours = {k: options[k] for k in _OPTION_NAMES if k in options}
    rest = {k: v for k, v in options.items() if k not in ours}
    unknown = sorted(set(rest) - set(_ALIGN_OPTION_NAMES))
    if unknown:
        raise SraVizError(
            f"unknown option(s) {', '.join(unknown)}; feature options are {', '.join(_OPTION_NAMES)} and "
            f"alignment options are {', '.join(_ALIGN_OPTION_NAMES)}"
        )
    return FeatureOptions(**ours), rest


def _resolve(pair, opts: FeatureOptions) -> _Resolved:
    _check_pair(pair)
    if opts.mass_mode not in MASS_MODES:
        raise SraVizError(f"mass_mode {opts.mass_mode!r} is unknown; expected one of {MASS_MODES}")
    if isinstance(opts.max_tokens, bool) or not isinstance(opts.max_tokens, int) or opts.max_tokens < 2:
        raise SraVizError(f"max_tokens must be an integer >= 2, got {opts.max_tokens!r}")
    layers, masses, mass_of = {}, {}, {}
    for side, given in (("teacher", opts.teacher_layers), ("student", opts.student_layers)):
        loaded = getattr(pair, side)
        given = opts.layers if given is None else given
        if isinstance(given, (str, bytes)) or not isinstance(given, (int, Sequence)):
            raise SraVizError(f"layers must be a block index or a list of them such as (-1,), got {given!r}")
        got = (given,) if isinstance(given, int) else tuple(given)
        if not got:
            raise SraVizError(f"no {side} layer was asked for; give layers=(-1,) or a list of block indices")
        blocks = [resolve_layer(loaded, layer) for layer in got]
        layers[side] = got
        layer = _per_side(opts.mass_layer, "mass_layer")[side]
        masses[side] = max(blocks) if layer is None else resolve_layer(loaded, layer)
        mass_of[side] = {
            asked: block if layer is None else masses[side] for asked, block in zip(got, blocks, strict=True)
        }
    return _Resolved(layers, masses, mass_of, _per_side(opts.head, "head"), opts)


# ----------------------------------------------------------------------------- running


def _rows_to_tensor(
    rows: list[list], length: int, padding_side: str, fill, dtype: torch.dtype
) -> torch.Tensor:
    out = torch.full((len(rows), length), fill, dtype=dtype)  # (B, L) padded like the model's input
    for b, row in enumerate(rows):
        sl = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        out[b, sl] = torch.as_tensor(row)
    return out


def _run_side(loaded, alignments, pieces: list[Piece], side: str, opts: _Resolved) -> list[dict]:
    """Forward one batch of pieces through one model; per piece: masses, CoMs, hidden, attention."""
    layers = opts.layers[side]
    need_attention = opts.options.mass_mode != "uniform" or opts.options.keep_attention
    ids, special, span_rows = [], [], []
    for piece in pieces:
        tokenized = getattr(alignments[piece.item], side)
        to_span = alignments[piece.item].token_to_span(side)
        pos = piece.positions[side]
        ids.append([tokenized.ids[p] for p in pos])
        special.append([tokenized.byte_spans[p] is None for p in pos])
        span_rows.append([int(to_span[p]) - piece.lo if to_span[p] >= 0 else -1 for p in pos])
    weighted = opts.options.mass_mode != "uniform"
    out = forward_features(
        loaded,
        ids,
        layers=layers,
        attention_layer=opts.mass_layer[side] if need_attention else None,
        attention_layers=sorted(set(opts.mass_of[side].values())) if weighted else (),
    )
    length = out.attention_mask.shape[1]
    valid = ~_rows_to_tensor(special, length, out.padding_side, True, torch.bool).to(
        out.attention_mask.device
    )
    span_index = _rows_to_tensor(span_rows, length, out.padding_side, -1, torch.long).to(
        out.attention_mask.device
    )
    by_block = {
        block: token_mass(
            out.attentions.get(block), out.attention_mask, opts.options.mass_mode, opts.head[side], valid
        )
        for block in {opts.mass_layer[side], *opts.mass_of[side].values()}
    }  # block -> (B, L)
    mass = by_block[opts.mass_layer[side]]  # (B, L)
    n_max = max(p.hi - p.lo for p in pieces)
    centers = {
        layer: span_centers(
            out.hidden[resolve_layer(loaded, layer)], by_block[opts.mass_of[side][layer]], span_index, n_max
        )
        for layer in dict.fromkeys(layers)
    }  # layer -> ((B, N, D), (B, N))
    results = []
    for b, piece in enumerate(pieces):
        n, k = len(ids[b]), piece.hi - piece.lo
        real = slice(length - n, length) if out.padding_side == "left" else slice(0, n)
        results.append(
            {
                "token_mass": mass[b, real].float().cpu(),
                "span_mass": span_masses(mass, span_index, n_max)[b, :k].float().cpu(),
                "span_masses": {layer: m[b, :k].detach().float().cpu() for layer, (_, m) in centers.items()},
                "centers": {layer: c[b, :k].detach().float().cpu() for layer, (c, _) in centers.items()},
                "hidden": {
                    layer: out.hidden[resolve_layer(loaded, layer)][b, real].float().cpu()
                    for layer in dict.fromkeys(layers)
                }
                if opts.options.keep_hidden
                else None,
                "attention": out.attention[b, :, real, real].float().cpu()
                if opts.options.keep_attention and out.attention is not None
                else None,
            }
        )
    return results


def _merge_side(loaded, alignment, pieces: list[Piece], parts: list[dict], side: str, opts: _Resolved):
    """Join the windows of one text: masses rescaled by each window's share of real tokens."""
    tokenized = getattr(alignment, side)
    special = [s is None for s in tokenized.byte_spans]
    counts = [sum(not special[p] for p in piece.positions[side]) for piece in pieces]
    shares = [c / max(sum(counts), 1) for c in counts] if len(pieces) > 1 else [1.0]
    token = torch.zeros(len(tokenized.ids))
    for piece, part, share in zip(pieces, parts, shares, strict=True):
        token[piece.positions[side]] += part["token_mass"] * share
    hidden = None
    if opts.options.keep_hidden:
        hidden = {}
        for layer in parts[0]["hidden"]:
            full = torch.zeros(len(tokenized.ids), parts[0]["hidden"][layer].shape[-1])
            for piece, part in reversed(
                list(zip(pieces, parts, strict=True))
            ):  # leading specials: the first window's
                full[piece.positions[side]] = part["hidden"][layer]
            hidden[layer] = full
    return SideFeatures(
        model=str(getattr(loaded, "name", side)),
        tokens=list(tokenized.tokens),
        token_mass=token,
        span_mass=torch.cat([p["span_mass"] * s for p, s in zip(parts, shares, strict=True)]),
        span_masses={
            layer: torch.cat([p["span_masses"][layer] * s for p, s in zip(parts, shares, strict=True)])
            for layer in parts[0]["span_masses"]
        },
        centers={layer: torch.cat([p["centers"][layer] for p in parts]) for layer in parts[0]["centers"]},
        block_of={layer: resolve_layer(loaded, layer) for layer in opts.layers[side]},
        mass_layer=opts.mass_layer[side],
        attention=parts[0]["attention"] if len(parts) == 1 else None,
        hidden=hidden,
    )


def _check_pair(pair) -> None:
    """``pair`` must be a loaded teacher/student pair (``load_pair``), not an alignment or None."""
    if not all(hasattr(getattr(pair, side, None), "tokenizer") for side in ("teacher", "student")):
        raise SraVizError(
            f"pair must be a ModelPair from load_pair(), got {type(pair).__name__}; call "
            "extract_features(alignment_or_text, pair)"
        )


def _check_made_by(alignment, pair, where: str) -> None:
    """Refuse an alignment made by other tokenizers than the pair's (its ids would index the wrong rows)."""
    from .tokenization import tokenizer_id

    made_by = getattr(alignment, "tokenizers", None)
    if made_by is None:
        return
    expected = (tokenizer_id(pair.teacher.tokenizer), tokenizer_id(pair.student.tokenizer))
    if tuple(made_by) != expected:
        raise SraVizError(
            f"{where}was aligned with tokenizers (teacher, student) = {tuple(made_by)}, but the pair's are "
            f"{expected}; align the text with the pair's tokenizers (in this order) or pass the text itself"
        )


def _prepare(item, pair, index: int, opts: _Resolved, align_options: dict):
    from .alignment import SpanAlignment, align_spans

    where = f"text {index} " if index >= 0 else "the alignment "
    if isinstance(item, str):
        if not item.strip():
            where = f"text {index} " if index >= 0 else "text "
            raise SraVizError(f"{where}is empty ({item!r}): give at least one non-space character")
        item = align_spans(item, pair.teacher.tokenizer, pair.student.tokenizer, **align_options)
    elif isinstance(item, SpanAlignment):
        _check_made_by(item, pair, where)
    else:
        raise SraVizError(
            f"expected a SpanAlignment or a str, got {type(item).__name__}; call "
            "extract_features(alignment_or_text, pair)"
        )
    if not getattr(item, "spans", None):
        raise SraVizError(
            f"text is empty or has no aligned span ({getattr(item, 'text', item)!r}); give real text"
        )
    return plan_windows(item, opts.options.max_tokens, opts.options.windowed, index)


def _features(
    items: Sequence,
    pair,
    opts: _Resolved,
    batch_size: int,
    align_options: dict,
    progress: Callable[[int, int], None] | None = None,
    single: bool = False,
):
    """Align, plan windows, run every piece batched per side (longest first), yield SpanFeatures in order."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SraVizError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    planned = [_prepare(item, pair, -1 if single else i, opts, align_options) for i, item in enumerate(items)]
    alignments = [p[0] for p in planned]
    pieces = [piece for p in planned for piece in p[1]]
    order = sorted(range(len(pieces)), key=lambda i: -max(len(v) for v in pieces[i].positions.values()))
    parts: dict[str, dict[int, dict]] = {"teacher": {}, "student": {}}
    left = [len(p[1]) for p in planned]
    done = 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for side in ("teacher", "student"):
            results = _run_side(getattr(pair, side), alignments, [pieces[i] for i in chunk], side, opts)
            parts[side].update(zip(chunk, results, strict=True))
        for i in chunk:
            left[pieces[i].item] -= 1
            done += left[pieces[i].item] == 0
        if progress is not None:
            progress(done, len(items))
    offset = 0
    for alignment, own, message in planned:
        ids = range(offset, offset + len(own))
        offset += len(own)
        sides = {
            s: _merge_side(getattr(pair, s), alignment, own, [parts[s][i] for i in ids], s, opts)
            for s in ("teacher", "student")
        }
        saliency = saliency_weights(
            sides["teacher"].span_mass[None],
            torch.ones(1, len(alignment.spans), dtype=torch.bool),
            opts.options.saliency_power,
        )[0]
        yield SpanFeatures(
            alignment,
            sides["teacher"],
            sides["student"],
            saliency,
            opts.options.mass_mode,
            bool(message),
            message,
            len(own),
        )


# ----------------------------------------------------------------------------- public entry points


def extract_features(alignment, pair, layers: Sequence[int] | int = (-1,), **options) -> SpanFeatures:
    """Span features of one text: a SpanAlignment, or a str aligned with the pair's tokenizers.

    Options are the fields of FeatureOptions (``teacher_layers``, ``mass_mode``, ``head``, ``mass_layer``,
    ``max_tokens``, ``keep_attention``, ``keep_hidden``, ``windowed``, ``saliency_power``); any other
    keyword goes to align_spans (``granularity``, ``prompt_end``). Over ``max_tokens`` on either side
    the text is cut at a span boundary (``truncated``, ``message`` and a warning) unless ``windowed``:
    windows of whole spans, each with the leading special tokens, run separately (attention never
    crosses windows) and each window's masses are scaled by its share of real tokens (sum stays 1).

    Example:
        >>> feats = extract_features(align_spans(text, tt, st), pair, layers=(-1,))  # doctest: +SKIP
        >>> feats.teacher.centers[-1].shape  # doctest: +SKIP
        torch.Size([12, 640])
    """
    feats = _single(alignment, pair, {"layers": layers, **options})
    if feats.truncated:
        warnings.warn(feats.message, stacklevel=2)
    return feats


def analyze_text(text: str, pair, **options) -> SpanFeatures:
    """Align ``text`` with the pair's tokenizers and extract its span features (see extract_features).

    Example:
        >>> analyze_text("Paris is the capital of France.", pair).to_frame().head()  # doctest: +SKIP
    """
    if not isinstance(text, str):
        raise SraVizError(f"analyze_text expects a str, got {type(text).__name__}; use extract_features")
    feats = _single(text, pair, options)
    if feats.truncated:
        warnings.warn(feats.message, stacklevel=2)
    return feats


def _single(item, pair, options: dict) -> SpanFeatures:
    opts, align_options = _split(options)
    return next(_features([item], pair, _resolve(pair, opts), 1, align_options, single=True))


def extract_corpus(
    texts: Sequence,
    pair,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> CorpusFeatures:
    """Span features of many texts, batched: a tidy frame (one row per span) and CoM matrices per layer.

    ``progress(done, total)`` is called after each batch with the number of finished texts. Options are
    those of extract_features (attention and hidden states are never kept); batching never changes results.

    Example:
        >>> corpus = extract_corpus(["One text.", "Another, longer text."], pair)  # doctest: +SKIP
        >>> corpus.teacher_centers[-1].shape[0] == len(corpus.frame)  # doctest: +SKIP
        True
    """
    if isinstance(texts, str):
        raise SraVizError("extract_corpus expects a list of texts, got one str; wrap it in a list")
    opts, align_options = _split(options)
    opts = replace(opts, keep_attention=False, keep_hidden=False)
    teacher: dict[int, list[np.ndarray]]  # layer -> one (S_i, D) array per text
    student: dict[int, list[np.ndarray]]
    frames, teacher, student, messages = [], {}, {}, {}
    for text_id, feats in enumerate(
        _features(list(texts), pair, _resolve(pair, opts), batch_size, align_options, progress)
    ):
        frames.append(feats.to_frame().assign(text_id=text_id))
        for layer, centers in feats.teacher.centers.items():
            teacher.setdefault(layer, []).append(centers.numpy())
        for layer, centers in feats.student.centers.items():
            student.setdefault(layer, []).append(centers.numpy())
        if feats.truncated:
            messages[text_id] = feats.message
    if messages:
        warnings.warn(
            f"{len(messages)} of {len(texts)} texts were truncated to max_tokens={opts.max_tokens} (see "
            "CorpusFeatures.messages); pass windowed=True to cover them",
            stacklevel=2,
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["text_id"])
    frame = frame[["text_id"] + [c for c in frame.columns if c != "text_id"]]
    return CorpusFeatures(
        frame=frame,
        teacher_centers={layer: np.concatenate(v).astype(np.float32) for layer, v in teacher.items()},
        student_centers={layer: np.concatenate(v).astype(np.float32) for layer, v in student.items()},
        messages=messages,
    )


__all__ = [
    "CorpusFeatures",
    "FeatureOptions",
    "SideFeatures",
    "SpanFeatures",
    "analyze_text",
    "extract_corpus",
    "extract_features",
    "n_layers",
]
