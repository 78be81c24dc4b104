"""sra_viz: see, measure and run cross-tokenizer distillation with Span Representation Alignment.

The library is a chain of plain functions (text -> byte-exact tokens -> spans -> features -> losses and
geometry -> figures); every public name below is importable from ``sra_viz`` directly:

    >>> import sra_viz  # doctest: +SKIP
    >>> pair = sra_viz.load_pair()  # doctest: +SKIP
    >>> tokenizers = pair.teacher.tokenizer, pair.student.tokenizer  # doctest: +SKIP
    >>> alignment = sra_viz.align_spans("Hello, world!", *tokenizers)  # doctest: +SKIP

Names are resolved lazily so ``import sra_viz`` stays cheap (no torch until a model is needed).
"""

from __future__ import annotations

from .lazy_names import lazy_names as _lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    "SraVizError": "errors",
    "load_model": "models",
    "load_pair": "models",
    "load_tokenizer": "models",
    "LoadedModel": "models",
    "ModelPair": "models",
    "ModelInfo": "models",
    "pick_device": "models",
    "fetch_all": "fetch",
    "ensure_default_model": "fetch",
    "tokenize_bytes": "tokenization",
    "TokenizedText": "tokenization",
    "align_spans": "alignment",
    "SpanAlignment": "alignment",
    "Span": "alignment",
    "extract_features": "extraction",
    "analyze_text": "extraction",
    "extract_corpus": "extraction",
    "SpanFeatures": "extraction",
    "SideFeatures": "extraction",
    "CorpusFeatures": "extraction",
    "token_mass": "features",
    "span_masses": "features",
    "span_centers": "features",
    "saliency_weights": "features",
    "DistillConfig": "distill",
    "DistillSession": "distill",
    "SRALoss": "distill",
    "load_examples": "data",
    "load_bundled_corpus": "data",
    "Example": "data",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = _lazy_names(__name__, _EXPORTS, __all__)
