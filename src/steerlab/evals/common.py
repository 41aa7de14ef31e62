"""What every eval suite shares: loading rows with schema validation, and scoring ChatPrompts under an
intervention at several coefficients on identical rows.

Data sources are a local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``) or, when the ``datasets``
package is installed, a hub id such as ``wassname/daily_dilemmas-self-honesty``. A schema error names the
file, the 1-based line (or item/row), the field and the expected schema.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab.chat import ChatPrompt, format_chat
from steerlab.evals.registry import Axis
from steerlab.evals.rowchecks import check_prompt_lengths, check_unique_ids
from steerlab.progress import throttled
from steerlab.scoring import ChoiceScores, ChoiceSpec, score_choices
from steerlab.textfiles import read_text

__all__ = [
    "EmptySelectionError",
    "FieldSpec",
    "RunContext",
    "Schema",
    "SchemaError",
    "chat_strings",
    "load_records",
    "long_table",
    "require_rows",
    "score_chat",
    "validate_record",
]

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class SchemaError(ValueError):
    """A data row lacks a field or has a field of the wrong type; the message says where and what."""


class EmptySelectionError(ValueError):
    """The options selected no rows (an eval never returns an empty table or a table of NaNs)."""


# ---------------------------------------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True)
class FieldSpec:
    """One field: ``kind`` in str, int, float, sign (+1/-1), str_list, any; optional fields may be absent."""

    kind: str
    required: bool = True
    note: str = ""


@dataclass(frozen=True)
class Schema:
    """Named fields a row must have; extra fields are kept and ignored."""

    name: str
    fields: Mapping[str, FieldSpec]

    def describe(self) -> str:
        parts = []
        for key, spec in self.fields.items():
            text = f"{key}: {spec.kind}" + ("" if spec.required else " (optional)")
            parts.append(text + (f" [{spec.note}]" if spec.note else ""))
        return f"{self.name} rows with fields {{{', '.join(parts)}}}"


def _coerce(kind: str, value: Any) -> Any:
    """The value converted to ``kind``, or raise ValueError with what was wrong."""
    if kind == "any":
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("is empty")
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        text = str(value)
        if not text.strip():
            raise ValueError("is an empty string")
        return text
    if kind in ("int", "sign"):
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be an integer, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"must be an integer, got {value!r}")
        if kind == "sign" and number not in (1, -1):
            raise ValueError(f"must be +1 or -1, got {value!r}")
        return int(number)
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
    if kind == "str_list":
        if isinstance(value, str):  # CSV stores lists as Python/JSON literals
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise ValueError(f"must be a list of strings, got {value!r}") from None
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list of strings, got {type(value).__name__}")
        return [None if v is None else str(v) for v in value]
    raise ValueError(f"unknown field kind {kind!r}")


def validate_record(record: Any, schema: Schema, where: str) -> dict[str, Any]:
    """The record with its schema fields coerced, or a `SchemaError` naming ``where`` and the field."""
    if not isinstance(record, Mapping):
        raise SchemaError(
            f"{where}: expected an object, got {type(record).__name__}; expected {schema.describe()}"
        )
    out = dict(record)
    for key, spec in schema.fields.items():
        if key not in record:
            if not spec.required:
                continue
            close = difflib.get_close_matches(key, [str(k) for k in record], n=1, cutoff=0.6)
            hint = f" (found {close[0]!r}: misspelled?)" if close else ""
            raise SchemaError(f"{where}: missing field {key!r}{hint}; expected {schema.describe()}")
        try:
            out[key] = _coerce(spec.kind, record[key])
        except ValueError as err:
            raise SchemaError(f"{where}: field {key!r} {err}; expected {schema.describe()}") from None
    return out


# ---------------------------------------------------------------------------------------------------------
# Loading


def _raw_file_records(path: Path) -> Iterable[tuple[str, Any]]:
    """(location, record) pairs of a local file; locations are 1-based lines, items or rows."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        # split on "\n" only, as reading line by line does (str.splitlines also splits inside JSON strings)
        for number, line in enumerate(read_text(path, "data file").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}: line {number}", json.loads(line)
            except json.JSONDecodeError as err:
                raise SchemaError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
    elif suffix == ".json":
        try:
            data = json.loads(read_text(path, "data file"))
        except json.JSONDecodeError as err:
            raise SchemaError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if isinstance(data, Mapping):  # {"rows": [...]} or a column-oriented table
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise SchemaError(f"{path}: a .json data file must hold a list of row objects")
        for number, item in enumerate(data, start=1):
            yield f"{path}: item {number}", item
    elif suffix == ".csv":
        read_text(path, "data file")  # a non-UTF-8 byte is an error naming the file
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for index, record in enumerate(frame.to_dict("records")):
            yield f"{path}: line {index + 2}", {k: (None if v == "" else v) for k, v in record.items()}
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
        for index, record in enumerate(frame.to_dict("records")):
            yield f"{path}: row {index + 1}", record
    else:
        raise SchemaError(f"{path}: unknown data file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def _hub_records(hub_id: str, config: str | None, split: str) -> Iterable[tuple[str, Any]]:
    try:
        import datasets  # type: ignore[import-not-found,unused-ignore]  # optional package
    except ImportError:
        raise FileNotFoundError(
            f"{hub_id!r} is not a local file, and loading it as a hub dataset needs the `datasets` package "
            "(`pip install datasets`); or pass a local .jsonl/.json/.csv/.parquet file"
        ) from None
    data = datasets.load_dataset(hub_id, config, split=split)
    for index, record in enumerate(data):
        yield f"hub dataset {hub_id}[{config or 'default'}/{split}]: row {index + 1}", record


def looks_like_hub_id(source: str) -> bool:
    """``org/name`` with no file suffix and no such local path."""
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and Path(source).suffix.lower() not in FILE_SUFFIXES


def load_records(
    source: str | Path,
    schema: Schema,
    *,
    hub_config: str | None = None,
    hub_split: str = "test",
) -> list[dict[str, Any]]:
    """Validated rows of a local file or a hub dataset; each row gains ``_where`` (its location) and
    ``_n`` (its 1-based position among the rows, a stable part of row ids)."""
    path = Path(source).expanduser()
    if path.is_file():
        raw = _raw_file_records(path)
    elif isinstance(source, str) and looks_like_hub_id(source) and not path.exists():
        raw = _hub_records(source, hub_config, hub_split)
    else:
        raise FileNotFoundError(
            f"data file {str(source)!r} does not exist (expected a .jsonl/.json/.csv/.parquet file, or a hub "
            "id like org/name when the `datasets` package is installed)"
        )
    rows = []
    for number, (where, record) in enumerate(raw, start=1):
        row = validate_record(record, schema, where)
        row["_where"], row["_n"] = where, number
        rows.append(row)
    if not rows:
        raise EmptySelectionError(f"{source}: holds no rows; expected {schema.describe()}")
    check_unique_ids(rows, source)
    return rows


def require_rows(rows: Sized, what: str) -> None:
    """Raise `EmptySelectionError` naming the selection when it kept no rows."""
    if len(rows) == 0:
        raise EmptySelectionError(f"{what} kept no rows; nothing to evaluate")


# ---------------------------------------------------------------------------------------------------------
# Scoring under an intervention


def chat_strings(
    tok: Any,
    prompts: Sequence[ChatPrompt],
    intervention: Any,
    coeff: float,
    cache: dict[tuple[str | None, str, str], str] | None = None,
) -> list[str]:
    """Formatted prompt strings at ``coeff``: ``intervention.rewrite`` first (prompt methods), then the
    chat template. ``cache`` memoises identical (system, user, prefill) across coefficients."""
    cache = {} if cache is None else cache
    out = []
    for prompt in prompts:
        system, user = prompt.system, prompt.user
        if intervention is not None:
            system, user = intervention.rewrite(coeff, system, user)
        key = (system, user, prompt.prefill)
        text = cache.get(key)
        if text is None:
            text = cache[key] = format_chat(tok, user, system, prompt.prefill)
        out.append(text)
    return out


def applied_at(model: Any, intervention: Any, coeff: float) -> Any:
    """The intervention's context manager at ``coeff`` (a null context when there is no intervention),
    reusing the base model's states below its first block across coefficients (`steerlab.prefix_reuse`)."""
    from steerlab.prefix_reuse import steered

    return steered(model, intervention, coeff)


class ProgressCounter:
    """Counts scored prompts and reports them through `steerlab.progress` (when enabled) about ten times."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._advance = throttled(desc, total, "prompts") if enabled else None

    def update(self, n: int = 1) -> None:
        if self._advance is not None:
            self._advance(n)

    def close(self) -> None:
        """Nothing to release (kept so callers can treat it like a progress bar)."""


def progress_bar(total: int, desc: str, enabled: bool) -> ProgressCounter:
    """A counter with ``update``/``close`` that reports progress of ``desc`` when ``enabled``."""
    return ProgressCounter(total, desc, enabled)


def score_chat(
    model: Any,
    tok: Any,
    intervention: Any,
    prompts: Sequence[ChatPrompt],
    coeffs: Sequence[float],
    choices: ChoiceSpec | str,
    *,
    max_batch: int = 64,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[float, ChoiceScores]:
    """Choice log-probs of every prompt at every coefficient (identical rows at each)."""
    cache: dict[tuple[str | None, str, str], str] = {}
    out: dict[float, ChoiceScores] = {}
    for coeff in coeffs:
        texts = chat_strings(tok, prompts, intervention, coeff, cache)
        check_prompt_lengths(model, tok, texts, f"scoring at c={coeff:g}")
        with applied_at(model, intervention, coeff):
            out[float(coeff)] = score_choices(
                model,
                tok,
                texts,
                choices,
                max_batch=max_batch,
                max_batch_tokens=max_batch_tokens,
                progress=progress,
            )
    return out


@dataclass
class RunContext:
    """Everything a suite's run function needs besides its config: the model, the intervention, the
    coefficients, the behaviour's axis hints, and batching/progress settings."""

    model: Any
    tok: Any
    intervention: Any
    coeffs: tuple[float, ...]
    axis: Axis
    eval_name: str
    show_progress: bool = False
    max_batch: int = 64
    max_batch_tokens: int | None = None

    def score(self, prompts: Sequence[ChatPrompt], choices: ChoiceSpec | str) -> dict[float, ChoiceScores]:
        """`score_chat` over all coefficients with one progress bar."""
        bar = progress_bar(len(prompts) * len(self.coeffs), self.eval_name, self.show_progress)
        try:
            return score_chat(
                self.model,
                self.tok,
                self.intervention,
                prompts,
                self.coeffs,
                choices,
                max_batch=self.max_batch,
                max_batch_tokens=self.max_batch_tokens,
                progress=bar.update,
            )
        finally:
            bar.close()

    def table(self, meta: pd.DataFrame, per_coeff: Mapping[float, Mapping[str, Any]]) -> pd.DataFrame:
        return long_table(self.eval_name, meta, per_coeff)


def long_table(
    eval_name: str,
    meta: pd.DataFrame,
    per_coeff: Mapping[float, Mapping[str, Any]],
) -> pd.DataFrame:
    """Stack one block per coefficient: the row metadata plus that coefficient's score columns.

    ``meta`` needs ``row_id`` (unique) and ``label``; the result starts with eval, row_id, label, coeff.
    """
    if meta["row_id"].duplicated().any():
        dup = meta.loc[meta["row_id"].duplicated(), "row_id"].head(5).tolist()
        raise ValueError(f"{eval_name}: duplicate row ids {dup}; row ids must be unique")
    meta = meta[["row_id", "label", *[c for c in meta.columns if c not in ("row_id", "label")]]]
    blocks = []
    for coeff, columns in per_coeff.items():
        block = meta.copy()
        block.insert(0, "eval", eval_name)
        block.insert(3, "coeff", float(coeff))
        for name, values in columns.items():
            block[name] = values
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    table["row_id"] = table["row_id"].astype(str)
    return table
