"""Plotly dashboards: one offline HTML report that summarises a search at a glance.

Compute, then draw: :mod:`.data`, :mod:`.importance`, :mod:`.arch_data` and :mod:`.network_data`
turn a study into plain numbers (tested numerically); :mod:`.figures` and :mod:`.arch_figures`
draw them; :mod:`.sections` and :mod:`.report` assemble the page.

Example:
    >>> from automl_cnn.dashboards import write_report
    >>> write_report(study, "runs/demo/report.html", run_dir="runs/demo").path
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

from .arch_data import (
    SharingCard,
    TopArchitecture,
    VolumeBox,
    describe,
    top_architectures,
    volume_boxes,
    weight_sharing,
)
from .data import (
    Curve,
    History,
    Importances,
    ParallelData,
    PruningSavings,
    SliceData,
    Span,
    Tradeoff,
    TrialRow,
    learning_curves,
    optimization_history,
    parallel_coordinates,
    pareto_front,
    pruning_savings,
    slices,
    timeline,
    tradeoff,
    trial_rows,
)
from .importance import param_importances
from .network_data import NetworkView, filter_images, network_view, tile
from .report import ReportResult, build_sections, export_pngs, report_beside_run, write_report

__all__ = [
    "Curve",
    "History",
    "Importances",
    "NetworkView",
    "ParallelData",
    "PruningSavings",
    "ReportResult",
    "SharingCard",
    "SliceData",
    "Span",
    "TopArchitecture",
    "Tradeoff",
    "TrialRow",
    "VolumeBox",
    "build_sections",
    "report_beside_run",
    "describe",
    "export_pngs",
    "filter_images",
    "learning_curves",
    "network_view",
    "optimization_history",
    "parallel_coordinates",
    "param_importances",
    "pareto_front",
    "pruning_savings",
    "slices",
    "timeline",
    "tile",
    "top_architectures",
    "tradeoff",
    "trial_rows",
    "volume_boxes",
    "weight_sharing",
    "write_report",
]
