"""Assemble a bench run's unit outputs into the results tables (no torch: pandas and the unit files only).

- ``OUT/results.parquet``: one tidy table, a row per (model, behavior, method, family, seed, variant, eval,
  coeff, metric) with value, ci_low, ci_high, n_rows, and the arm's calibrated |c| and achieved KL.
- ``OUT/rows/<eval>/<arm>.parquet``: the per-row tables (checked to hold identical rows for every arm).
- ``OUT/calibration.parquet``: per arm, the calibrated |c|, the KL at +c and -c, convergence and the trace.
- ``OUT/foundations.parquet``: tiny-mfv per-foundation delta-logit per arm, when tiny-mfv ran.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from steerlab.bench.store import write_atomic
from steerlab.metrics import check_same_rows

__all__ = ["RESULT_COLUMNS", "assemble", "write_parquet"]

RESULT_COLUMNS = [
    "model",
    "behavior",
    "method",
    "family",
    "seed",
    "variant",
    "eval",
    "coeff",
    "calibrated_c",
    "calibrated_kl",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_rows",
]
ARM_COLUMNS = ["method", "family", "seed", "variant"]


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Atomic parquet write (a crash leaves the old file or the whole new one)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_atomic(path, buffer.getvalue())


def _arm(unit: dict[str, Any]) -> str:
    parts = [unit["method"], f"s{unit['seed']}"] + (
        [f"v{unit['variant']}"] if unit["variant"] is not None else []
    )
    return "-".join(parts)


def _unit_dir(out: Path, unit: dict[str, Any]) -> Path:
    return out / "units" / unit["kind"] / unit["name"]


def _calibration_rows(out: Path, units: list[dict[str, Any]], status: dict[str, str]) -> pd.DataFrame:
    rows = []
    for unit in units:
        if unit["kind"] != "calibrate" or status.get(unit["name"]) != "done":
            continue
        document = json.loads((_unit_dir(out, unit) / "calibration.json").read_text())
        trace = document.get("trace", [])
        last = next((p for p in trace if p["coeff"] == document["coeff"]), trace[-1] if trace else {})
        rows.append(
            {
                **{k: unit[k] for k in ARM_COLUMNS},
                "arm": _arm(unit),
                "policy": document["policy"],
                "calibrated_c": float(document["coeff"]),
                "calibrated_kl": float(document["achieved_kl"]),
                "kl_pos": float(last.get("kl_pos", math.nan)),
                "kl_neg": float(last["kl_neg"]) if last.get("kl_neg") is not None else math.nan,
                "target_kl": float(document["target_kl"]),
                "converged": bool(document["converged"]),
                "n_evals": int(document["n_evals"]),
                "seconds": float(document.get("seconds", math.nan)),
                "note": document.get("note", ""),
                "trace": json.dumps(trace),
            }
        )
    columns = [
        *ARM_COLUMNS,
        "arm",
        "policy",
        "calibrated_c",
        "calibrated_kl",
        "kl_pos",
        "kl_neg",
        "target_kl",
    ]
    columns += ["converged", "n_evals", "seconds", "note", "trace"]
    return pd.DataFrame(rows, columns=columns)


def assemble(
    out: str | Path, config: dict[str, Any], plan_units: list[dict[str, Any]], status: dict[str, str]
) -> dict[str, pd.DataFrame]:
    """Build and write the results tables from the done units of a plan; returns them by name."""
    out = Path(out)
    calibration = _calibration_rows(out, plan_units, status)
    by_arm = {row["arm"]: row for row in calibration.to_dict("records")}
    results: list[dict[str, Any]] = []
    foundations: list[dict[str, Any]] = []
    rows_by_eval: dict[str, dict[str, pd.DataFrame]] = {}
    for unit in plan_units:
        if unit["kind"] != "eval" or status.get(unit["name"]) != "done":
            continue
        folder = _unit_dir(out, unit)
        arm = _arm(unit)
        cal = by_arm.get(arm, {})
        ident = {
            "model": config["model"],
            "behavior": config["behavior"],
            **{k: unit[k] for k in ARM_COLUMNS},
            "eval": unit["eval"],
            "calibrated_c": cal.get("calibrated_c", math.nan),
            "calibrated_kl": cal.get("calibrated_kl", math.nan),
        }
        summary = json.loads((folder / "summary.json").read_text())
        for metric in summary["metrics"]:
            results.append(
                {
                    **ident,
                    **{k: metric[k] for k in ("metric", "coeff", "value", "ci_low", "ci_high", "n_rows")},
                }
            )
        for row in summary.get("foundations", []):
            foundations.append({**{k: unit[k] for k in ARM_COLUMNS}, "arm": arm, **row})
        table = pd.read_parquet(folder / "rows.parquet")
        table.insert(0, "arm", arm)
        for column in reversed(ARM_COLUMNS):
            table.insert(1, column, unit[column])
        rows_by_eval.setdefault(unit["eval"], {})[arm] = table
    for eval_name, tables in rows_by_eval.items():
        first_arm, first = next(iter(tables.items()))
        for arm, table in tables.items():
            check_same_rows(first, table, f"{eval_name}/{first_arm}", f"{eval_name}/{arm}")
            write_parquet(table, out / "rows" / eval_name / f"{arm}.parquet")
    frames = {
        "results": pd.DataFrame(results, columns=RESULT_COLUMNS),
        "calibration": calibration,
        "foundations": pd.DataFrame(foundations),
    }
    frames["results"]["variant"] = frames["results"]["variant"].astype("Int64")
    frames["calibration"]["variant"] = frames["calibration"]["variant"].astype("Int64")
    for name, frame in frames.items():
        if name != "foundations" or len(frame):
            write_parquet(frame, out / f"{name}.parquet")
        else:
            (out / f"{name}.parquet").unlink(missing_ok=True)  # stale from an earlier config
    return frames
