"""Extra fixed coefficients beside the calibrated one: ``[coefficients] extra = [1.0]``.

Published tables often report a method at its natural scale (a weight-steering adapter at alpha = 1, the
scale it was trained at) as well as at iso-KL. With ``extra``, every eval unit of an intervention that has
a dose also scores -e and +e for each extra magnitude e, in the same unit (no new units: the plan grows by
nothing, and the shared c = 0 rows of `steerlab.bench.baseline` serve both). The summary of each extra
magnitude is the suite's ordinary summary of the sub-table (-e, 0, +e), merged after the main summary, so
every metric keeps its meaning and the extra points differ only in their ``coeff``. Interventions without
a dose (prompting) are scored at +/-1 already and get nothing extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

__all__ = ["main_table", "merge_extra_summaries", "parse_extra", "with_extra"]


def parse_extra(config: Any, table: dict[str, Any], config_error: Callable[..., Exception]) -> list[float]:
    """``[coefficients] extra``: magnitudes > 0 (each scored at -e and +e), not for a fixed policy."""
    if "extra" not in table:
        return []
    values = table["extra"]
    if config.policy == "fixed":
        raise config_error(
            config,
            "[coefficients] extra is for a calibrated or kl-ladder policy (a fixed list names them all)",
            "extra",
        )
    ok = isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    )
    if not ok:
        raise config_error(
            config,
            f"[coefficients] extra must be a list of magnitudes > 0 (e.g. [1.0]), got {values!r}",
            "extra",
        )
    return sorted({float(v) for v in values})


def _present(c: float, coeffs: Sequence[float]) -> bool:
    return any(math.isclose(c, have, rel_tol=1e-9, abs_tol=1e-12) for have in coeffs)


def with_extra(
    coeffs: Sequence[float], extra: Sequence[float], has_dose: bool
) -> tuple[list[float], list[float]]:
    """(every coefficient to score, the extra magnitudes actually added): +/-e for each e not already scored."""
    if not has_dose:
        return [float(c) for c in coeffs], []
    added = [float(e) for e in extra if not _present(e, coeffs)]
    scored = sorted({float(c) for c in coeffs} | {s * e for e in added for s in (-1.0, 1.0)})
    return scored, added


def merge_extra_summaries(
    table: pd.DataFrame,
    summary: dict[str, Any],
    added: Sequence[float],
    summarise: Callable[[pd.DataFrame], dict[str, Any]],
) -> dict[str, Any]:
    """``summary`` (of the main coefficients) with the metrics of each extra sub-table (-e, 0, +e) appended
    (c = 0 once); the summary's other entries stay the main ones. Records ``extra_coeffs``."""
    if not added:
        return summary
    metrics = list(summary["metrics"])
    seen = {(str(row["metric"]), float(row["coeff"])) for row in metrics}
    for e in added:
        sub = table[table["coeff"].isin([-e, 0.0, e])].copy()
        sub.attrs = dict(table.attrs)
        for row in summarise(sub)["metrics"]:
            key = (str(row["metric"]), float(row["coeff"]))
            if key not in seen:
                seen.add(key)
                metrics.append(row)
    return {**summary, "metrics": metrics, "extra_coeffs": list(added)}


def main_table(table: pd.DataFrame, coeffs: Sequence[float]) -> pd.DataFrame:
    """The rows of the policy's own coefficients (what the summary without extras sees)."""
    sub = table[table["coeff"].isin(list(coeffs))].copy()
    sub.attrs = {**table.attrs, "coeffs": [float(c) for c in coeffs]}
    return sub
