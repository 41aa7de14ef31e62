"""What an eval suite shows in a report, declared as data (torch-free).

An eval suite declares a `ReportSpec` when it registers: the summary metrics to tabulate per coefficient,
whether a score-vs-coefficient plot makes sense, which of its summary's extra tables to keep, and any
views (violins, heatmaps, custom sections) computed from its own results. The bench writes every suite's
spec beside the results (``evals.json``), so `steerlab report` renders any suite, built-in or a user's, with
no suite-specific code and without importing torch.

    register_eval("my-suite", MyConfig, "...", native_pole="...",
                  report=ReportSpec(metrics=(ReportMetric("mean_y", "mean y"), ReportMetric("acc", "accuracy")),
                                    views=(ViolinView(column="logratio"),)))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_METRICS",
    "HeatmapView",
    "ReportMetric",
    "ReportSpec",
    "ReportView",
    "SectionView",
    "ViolinView",
    "register_view_kind",
    "view_from_dict",
]


@dataclass(frozen=True)
class ReportMetric:
    """A summary metric (``metric`` column of results.parquet) shown per coefficient under ``label``."""

    key: str
    label: str
    scale: float = 1.0
    unit: str = ""


@dataclass(frozen=True)
class ReportView:
    """Base of the declared views; ``kind`` names the renderer in `steerlab.report_views`."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class ViolinView(ReportView):
    """Per-row distribution of ``column`` per method and relative coefficient (-c, 0, +c), random band in grey."""

    kind: ClassVar[str] = "violins"
    column: str = "logratio"
    title: str = "per-row log-odds"


@dataclass(frozen=True)
class HeatmapView(ReportView):
    """Methods x ``column`` heatmap of ``value`` at +c from the summary table ``table`` (mean over arms)."""

    kind: ClassVar[str] = "heatmap"
    table: str = ""
    column: str = ""
    value: str = ""
    title: str = ""
    caption: str = ""
    filename: str = ""  # default: <eval>_heatmap.png


@dataclass(frozen=True)
class SectionView(ReportView):
    """A custom section: ``function`` ("package.module:name") takes an `EvalReportContext`, returns markdown
    lines. Keep that module torch-free so reports render on machines without torch."""

    kind: ClassVar[str] = "section"
    function: str = ""


_VIEW_KINDS: dict[str, type[ReportView]] = {cls.kind: cls for cls in (ViolinView, HeatmapView, SectionView)}


def register_view_kind(cls: type[ReportView]) -> type[ReportView]:
    """Make a view class rebuildable by `view_from_dict` (its renderer goes in report_views.VIEW_RENDERERS)."""
    _VIEW_KINDS[cls.kind] = cls
    return cls


def view_from_dict(document: dict[str, Any]) -> ReportView:
    """Rebuild a view from `ReportView.to_dict` output; an unknown kind is an error naming the valid ones."""
    values = dict(document)
    kind = values.pop("kind", "")
    if kind not in _VIEW_KINDS:
        raise ValueError(f"unknown report view kind {kind!r}; valid kinds: {', '.join(sorted(_VIEW_KINDS))}")
    return _VIEW_KINDS[kind](**values)


DEFAULT_METRICS = (ReportMetric("mean_y", "mean y"), ReportMetric("mean_pmass", "pmass"))


@dataclass(frozen=True)
class ReportSpec:
    """An eval suite's report declaration.

    ``metrics``: the per-coefficient table; ``score_plot``: plot mean y vs coefficient with the KL overlay;
    ``headline``: may be the bench's headline eval (a collateral-damage suite such as off-task is not);
    ``dose_response``: the report draws its effect-vs-KL curve, same-KL table and Pareto front (None: as
    ``headline``, so a collateral-damage suite has none);
    ``tables``: keys of the suite's summary that hold extra per-row-group tables (lists of records) that the
    bench keeps; ``views``: extra plots and sections.
    """

    metrics: tuple[ReportMetric, ...] = DEFAULT_METRICS
    score_plot: bool = True
    headline: bool = True
    tables: tuple[str, ...] = ()
    views: tuple[ReportView, ...] = field(default_factory=tuple)
    dose_response: bool | None = None

    @property
    def has_dose_response(self) -> bool:
        """Whether the report draws this eval's dose-response and Pareto sections."""
        return self.headline if self.dose_response is None else self.dose_response

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": [dataclasses.asdict(m) for m in self.metrics],
            "score_plot": self.score_plot,
            "headline": self.headline,
            "tables": list(self.tables),
            "views": [view.to_dict() for view in self.views],
            "dose_response": self.dose_response,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ReportSpec:
        return cls(
            metrics=tuple(ReportMetric(**m) for m in document.get("metrics", [])) or DEFAULT_METRICS,
            score_plot=bool(document.get("score_plot", True)),
            headline=bool(document.get("headline", True)),
            tables=tuple(document.get("tables", ())),
            views=tuple(view_from_dict(v) for v in document.get("views", [])),
            dose_response=document.get("dose_response"),
        )
