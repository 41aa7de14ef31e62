"""The bench config's ``[coefficients]`` table (torch-free): the coefficient policy (calibrated, fixed,
kl-ladder), the fixed values, the kl-ladder KL targets, and the extra / fractional coefficients, read onto
a :class:`~steerlab.bench.config.BenchConfig` and written back by :func:`coefficients_dict`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steerlab.bench.config_errors import config_error

if TYPE_CHECKING:
    from steerlab.bench.config import BenchConfig

__all__ = ["POLICIES", "coefficients_dict", "parse_coefficients"]

POLICIES = ("calibrated", "fixed", "kl-ladder")


def parse_coefficients(config: BenchConfig, table: dict[str, Any]) -> None:
    """Copy and check the ``[coefficients]`` table onto `config` (policy, values, targets, extra, fractions)."""
    for key in table:
        if key not in ("policy", "values", "targets", "extra", "fractions"):
            raise config_error(
                config,
                f"[coefficients] has no key {key!r}; valid keys: policy, values, targets, extra, fractions",
                key,
            )
    config.policy = table.get("policy", "calibrated")
    if config.policy not in POLICIES:
        raise config_error(
            config, f"coefficient policy {config.policy!r} is not one of {list(POLICIES)}", "policy"
        )
    values = table.get("values", [-1.0, 0.0, 1.0])
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise config_error(
            config, f"[coefficients] values must be a list of numbers, got {values!r}", "values"
        )
    config.coefficients = [float(v) for v in values]
    if config.policy == "fixed" and 0.0 not in config.coefficients:
        raise config_error(config, "[coefficients] values must include 0 (the unsteered model)", "values")
    _parse_targets(config, table)
    from steerlab.bench.extra_coeffs import parse_extra
    from steerlab.bench.fractions import parse_fractions

    config.extra_coefficients = parse_extra(config, table, config_error)
    parse_fractions(config, table)


def _parse_targets(config: BenchConfig, table: dict[str, Any]) -> None:
    """``targets`` (kl-ladder only): KL levels in nats, each > 0; default 0.25, 0.5, 1, 2."""
    if "targets" in table and config.policy != "kl-ladder":
        raise config_error(config, '[coefficients] targets is only for policy = "kl-ladder"', "targets")
    if config.policy != "kl-ladder":
        return
    targets = table.get("targets", [0.25, 0.5, 1.0, 2.0])
    ok = isinstance(targets, list) and bool(targets)
    ok = ok and all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in targets)
    if not ok:
        raise config_error(
            config, f"[coefficients] targets must be a list of KLs > 0, got {targets!r}", "targets"
        )
    config.targets = sorted({float(t) for t in targets})


def coefficients_dict(config: BenchConfig) -> dict[str, Any]:
    """The ``[coefficients]`` table to write back to OUT/config.toml."""
    coefficients: dict[str, Any] = {"policy": config.policy, "values": list(config.coefficients)}
    if config.policy == "kl-ladder":
        coefficients["targets"] = list(config.targets)
    if config.fractions:
        coefficients["fractions"] = list(config.fractions)
    if config.extra_coefficients:
        coefficients["extra"] = list(config.extra_coefficients)
    return coefficients
