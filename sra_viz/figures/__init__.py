"""Pure plotly figure builders for sra_viz: every function returns a ``go.Figure`` and draws nothing.

Core builders take plain data (lists, arrays, DataFrames); the ``*_figure`` wrappers take the
library's dataclasses (``SpanAlignment``, ``SpanFeatures``, ``SnapshotProjection``, run folders).
One palette, :data:`PALETTE`: teacher blue, student vermillion, in every view.

    >>> from sra_viz.figures import alignment_figure, PALETTE  # doctest: +SKIP
    >>> alignment_figure(align_spans("Hello", tt, st)).show()  # doctest: +SKIP
"""

from .aligners import aligner_comparison_figure
from .alignment import alignment_diagram, alignment_figure
from .geometry import com_scatter, corpus_scatter, geometry_over_training, gram_matrices, snapshots_figure
from .saliency import (
    attention_figure,
    attention_heatmap,
    corpus_saliency_figure,
    saliency_figure,
    span_mass_text,
    top_spans_bar,
    top_spans_figure,
)
from .style import PALETTE, TEMPLATE, styled, token_labels, visible_bytes, visible_text
from .training import METRIC_TITLES, convergence_curves, metrics_frame, run_metrics_figure

__all__ = [
    "PALETTE",
    "TEMPLATE",
    "METRIC_TITLES",
    "aligner_comparison_figure",
    "alignment_diagram",
    "alignment_figure",
    "attention_figure",
    "attention_heatmap",
    "com_scatter",
    "convergence_curves",
    "corpus_saliency_figure",
    "corpus_scatter",
    "geometry_over_training",
    "gram_matrices",
    "metrics_frame",
    "run_metrics_figure",
    "saliency_figure",
    "snapshots_figure",
    "span_mass_text",
    "styled",
    "token_labels",
    "top_spans_bar",
    "top_spans_figure",
    "visible_bytes",
    "visible_text",
]
