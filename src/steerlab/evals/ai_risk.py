"""`ai-risk-ab`: Anthropic advanced-ai-risk A/B questions (Perez et al. 2022), any file in that format.

Native score: ``y = log P(matching answer) - log P(not-matching answer)``. What the matching answer
means differs between releases of a file with the same name (human-written survival-instinct: accepts
shutdown; LM-written: resists it), so each file's sign is decided from its content
(`steerlab.evals.ai_risk_signs`): a known release's trait polarity times the behaviour's
``[eval_axis.ai-risk-ab.traits]``; any other file needs the option ``sign`` (or a per-file hint
``[eval_axis.ai-risk-ab.files] my-file = -1``), else it is an error. The sign used is in the ``sign`` column,
the answer that counts as the positive pole in ``positive_answer``.

Position bias: by default (``order="both"``) every question is scored in both answer orders and the row
is the mean of the two (see `steerlab.evals.ab`); the summary adds the per-order % positive pole and the
letter bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from steerlab.evals.ab import (
    DEFAULT_PREFILL,
    ABItem,
    answer_letter,
    choice_letters,
    present,
    resolve_order,
    score_ab,
)
from steerlab.evals.ab_summary import FILES_TABLE, summarise_ab
from steerlab.evals.ai_risk_signs import FileSign, file_sign
from steerlab.evals.common import FieldSpec, RunContext, Schema, load_records, require_rows
from steerlab.evals.registry import Axis, register_eval
from steerlab.paths import package_data, shared_data_dir
from steerlab.report_spec import DEFAULT_METRICS, ReportMetric, ReportSpec, SectionView, ViolinView

DEFAULT_FILES = ("survival-instinct", "corrigible-neutral-HHH")
SHARED_FOLDER = ("anthropic_evals_advanced_ai_risk", "human_generated_evals")
FIXTURE = "ai_risk_fixture.jsonl"

SCHEMA = Schema(
    "Anthropic advanced-ai-risk",
    {
        "question": FieldSpec("str", note="question with inline ' (A) ...' choice lines"),
        "answer_matching_behavior": FieldSpec("str", note="e.g. ' (A)'"),
        "answer_not_matching_behavior": FieldSpec("str", note="e.g. ' (B)'"),
    },
)


__all__ = ["AIRiskConfig", "load_files", "load_items", "resolve_files", "summarise_ab"]


@dataclass(frozen=True)
class AIRiskConfig:
    """``files``: paths, or names of the upstream files (e.g. ``power-seeking-inclination``) looked up in
    the shared data folder; None = survival-instinct + corrigible-neutral-HHH when the shared folder is
    present, else steerlab's own 20-row fixture. ``n_per_file``: first N rows of each file.
    ``order``: both (each question in both answer orders, averaged), balanced or as-is.
    ``sign``: +1/-1, the behaviour's relation to the matching answer of every file (needed for files
    that are not a known release). ``balance_letters``: older switch, when set: True = order balanced,
    False = order as-is. ``binary_only``: keep only rows whose choices are exactly (A) and (B) (before
    ``n_per_file``), so that balanced letters put the matching answer at A on exactly half of each file's
    rows when ``n_per_file`` is even (survival-instinct has 3- to 8-choice rows among its first 100)."""

    files: tuple[str, ...] | None = None
    n_per_file: int | None = None
    order: str = "both"
    sign: int | None = None
    balance_letters: bool | None = None
    prefill: str = DEFAULT_PREFILL
    system: str | None = None
    binary_only: bool = False

    def __post_init__(self) -> None:
        resolve_order(self.order, self.balance_letters)
        if self.sign is not None and (isinstance(self.sign, bool) or self.sign not in (1, -1)):
            raise ValueError(f"ai-risk-ab: option sign must be 1 or -1, got {self.sign!r}")
        if self.n_per_file is not None and self.n_per_file < 1:
            raise ValueError(f"ai-risk-ab: n_per_file must be >= 1, got {self.n_per_file}")

    def data_files(self) -> list[str | Path]:
        """The files this config reads, resolved now (recorded and hashed by steerlab.provenance)."""
        return list(resolve_files(self.files))


def resolve_files(files: tuple[str, ...] | None) -> list[Path]:
    """Paths of the requested files; bare names resolve in the shared advanced-ai-risk folder."""
    shared = shared_data_dir()
    folder = shared.joinpath(*SHARED_FOLDER) if shared is not None else None
    if files is None:
        if folder is None or not folder.is_dir():
            return [package_data(FIXTURE)]
        files = DEFAULT_FILES
    out = []
    for name in files:
        path = Path(name).expanduser()
        if path.is_file():
            out.append(path)
            continue
        candidate = folder / f"{name}.jsonl" if folder is not None else None
        if candidate is not None and candidate.is_file():
            out.append(candidate)
            continue
        known = (
            sorted(p.stem for p in folder.glob("*.jsonl")) if folder is not None and folder.is_dir() else []
        )
        where = f"known names: {', '.join(known)}" if known else "the shared data folder is absent"
        raise FileNotFoundError(f"ai-risk-ab: no data file {name!r} (not a path; {where})")
    return out


def _labels(files: list[Path]) -> list[str]:
    """A label per file: its stem, or parent/stem where two files share a stem."""
    stems = [p.stem for p in files]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in files]


def load_files(
    files: list[Path],
    n_per_file: int | None,
    axis: Axis,
    sign: int | None = None,
    binary_only: bool = False,
) -> tuple[list[ABItem], dict[str, FileSign]]:
    """Items of every file (first ``n_per_file`` rows, only (A)/(B) rows when `binary_only`) and each
    file's sign, keyed by its label."""
    if n_per_file is not None and n_per_file < 1:
        raise ValueError(f"ai-risk-ab: n_per_file must be >= 1, got {n_per_file}")
    items, signs = [], {}
    for path, label in zip(files, _labels(files), strict=True):
        all_rows = load_records(path, SCHEMA)
        signs[label] = info = file_sign(axis, path.stem, all_rows, sign)
        kept = (
            [r for r in all_rows if choice_letters(r["question"]) == ["A", "B"]] if binary_only else all_rows
        )
        for r in kept[:n_per_file]:
            matching = answer_letter(r["answer_matching_behavior"], r["_where"], "answer_matching_behavior")
            other = answer_letter(
                r["answer_not_matching_behavior"], r["_where"], "answer_not_matching_behavior"
            )
            items.append(ABItem(f"{label}:{r['_n']}", label, r["question"], matching, other, info.sign))
    return items, signs


def load_items(
    files: list[Path], n_per_file: int | None, axis: Axis, sign: int | None = None
) -> list[ABItem]:
    """The items of `load_files`."""
    return load_files(files, n_per_file, axis, sign)[0]


@register_eval(
    "ai-risk-ab",
    AIRiskConfig,
    "Anthropic advanced-ai-risk A/B questions (default: survival-instinct, corrigible-neutral-HHH)",
    native_pole="the answer matching the file's behaviour is preferred (log P(match) - log P(not match) > 0)",
    summarise=summarise_ab,
    report=ReportSpec(
        metrics=(
            *DEFAULT_METRICS,
            ReportMetric("pct_matching", "% matching behaviour"),
            ReportMetric("pct_positive_pole", "% positive pole"),
            ReportMetric("letter_bias", "letter bias"),
        ),
        tables=(FILES_TABLE,),
        views=(
            ViolinView(column="logratio", title="per-row log-odds"),
            SectionView(function="steerlab.evals.ab_summary:ab_files_section"),
        ),
    ),
    row_schema=SCHEMA.describe(),
    default_data=(
        "survival-instinct + corrigible-neutral-HHH from Anthropic's advanced-ai-risk human_generated_evals "
        "in the shared data folder ($STEERLAB_SHARED_DATA); offline: steerlab's 20-row fixture "
        f"({FIXTURE})"
    ),
)
def run_ai_risk(ctx: RunContext, config: AIRiskConfig) -> pd.DataFrame:
    items, signs = load_files(
        resolve_files(config.files), config.n_per_file, ctx.axis, config.sign, config.binary_only
    )
    require_rows(items, f"ai-risk-ab with files={config.files} n_per_file={config.n_per_file}")
    first, both = present(items, resolve_order(config.order, config.balance_letters))
    table = score_ab(ctx, first, prefill=config.prefill, system=config.system, both_orders=both)
    table["release"] = table["source"].map({k: v.release for k, v in signs.items()})
    table["positive_answer"] = table["source"].map({k: v.positive_answer for k, v in signs.items()})
    table["sign_source"] = table["source"].map({k: v.source for k, v in signs.items()})
    return table
