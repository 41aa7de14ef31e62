"""Family-native splits of dW from the trained adapter parameters of both poles (adapters.safetensors).

- lora / pissa: the positive pole's change vs the negative pole's; rank components ordered by norm
  within each pole (top-1, top half) vs the rest. PiSSA components carry their initial term.
- dora: direction-only change (magnitude held at the base row norms) vs the rest, and magnitude-only
  change (rows of W0 rescaled) vs the rest.
- ia3: attention gates (k, v) vs MLP gates (down_proj).
- delora: poles and rank components (`steerlab.analysis.native_delora`); and whole-delta reshapes, not
  splits: ``dir_only`` (per-tensor norms flattened to their RMS),
  ``mag_only`` (per-tensor norms kept, directions random), ``random_norm`` (directions kept, per-tensor
  norms permuted at random).
- oft: the rotation-derived (skew) part vs the residual of the effective update
  (`steerlab.analysis.native_oft`).
Splits are checked by the caller: keep + drop == dW.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.analysis import bases
from steerlab.analysis.inputs import AblationInputError, Adapter
from steerlab.interventions.weight import Delta, LowRankDelta
from steerlab.registry import Registry

__all__ = [
    "NATIVE_SPLITS",
    "NativeSplit",
    "get_param",
    "module_of",
    "native_reshapes",
    "native_variants",
    "pole_and_rank_splits",
    "require_params",
]

log = logging.getLogger("steerlab.analysis.native")

ATTENTION_ROLES = {"q", "k", "v", "qkv", "o"}


@dataclass
class NativeSplit:
    stem: str
    basis: str
    group: str
    fn: Callable[[str, Delta], tuple[Delta, Delta]]
    keep_name: str
    drop_name: str


def require_params(adapter: Adapter) -> None:
    """Refuse clearly when the trained adapter parameters were not saved with the delta."""
    if not adapter.params:
        raise AblationInputError(
            f"{adapter.source or adapter.label}: no adapters.safetensors (the trained adapter parameters of "
            "both poles); re-extract it with this steerlab, or leave 'native' out of --variants"
        )


def _module(name: str) -> str:
    return name[: -len(".weight")] if name.endswith(".weight") else name


def _get(params: dict[str, torch.Tensor], key: str, adapter: Adapter) -> torch.Tensor:
    if key not in params:
        raise AblationInputError(f"{adapter.source or adapter.label}: adapters.safetensors lacks {key!r}")
    return params[key].float()


def get_param(adapter: Adapter, key: str) -> torch.Tensor:
    """One saved adapter parameter (float32); a missing key is a one-line error naming the directory."""
    return _get(adapter.params, key, adapter)


module_of = _module


def _lora_components(adapter: Adapter, pole: str, name: str) -> list[LowRankDelta]:
    """Rank-1 (PiSSA: rank-2) components of one pole's change to `name`, largest norm first."""
    params, module = adapter.params, _module(name)
    up = _get(params, f"{pole}/{module}/lora_B.default.weight", adapter)
    down = _get(params, f"{pole}/{module}/lora_A.default.weight", adapter)
    scale = float(_get(params, f"{pole}/{module}/scaling", adapter)[0])
    initial = (params.get(f"{pole}/{module}/initial_up"), params.get(f"{pole}/{module}/initial_down"))
    parts = []
    for j in range(up.shape[1]):
        ups, downs = [up[:, j : j + 1] * scale], [down[j : j + 1]]
        if initial[0] is not None and initial[1] is not None:
            ups.append(-initial[0][:, j : j + 1].float())
            downs.append(initial[1][j : j + 1].float())
        parts.append(LowRankDelta(torch.cat(ups, dim=1), torch.cat(downs, dim=0)))
    return sorted(parts, key=lambda p: -bases.energy(p))


def _sum(parts: list[LowRankDelta], sign: float, like: Delta) -> Delta:
    if not parts:
        return LowRankDelta(torch.zeros(like.shape[0], 0), torch.zeros(0, like.shape[1]))
    return LowRankDelta(torch.cat([p.up * sign for p in parts], 1), torch.cat([p.down for p in parts], 0))


def _join(a: Delta, b: Delta) -> Delta:
    if isinstance(a, LowRankDelta) and isinstance(b, LowRankDelta):
        return LowRankDelta(torch.cat([a.up, b.up], 1), torch.cat([a.down, b.down], 0))
    return bases.dense_of(a) + bases.dense_of(b)


SplitFn = Callable[[str, Delta], tuple[Delta, Delta]]


def pole_and_rank_splits(poles: SplitFn, top: Callable[[Callable[[int], int]], SplitFn]) -> list[NativeSplit]:
    """The splits of a low-rank family with two poles (LoRA, PiSSA, DeLoRA): ``poles`` keeps the positive
    pole; ``top(count)`` keeps the first count(r) rank components of each pole (signed), for the top-1 and
    top-r/2 splits."""
    return [
        NativeSplit(
            "poles", "adapter_poles", "pole_positive", poles, "positive_pole_only", "negative_pole_only"
        ),
        NativeSplit(
            "rank_top1",
            "adapter_rank",
            "rankcomp_top1",
            top(lambda r: 1),
            "rankcomp_top1",
            "rankcomp_top1_residual",
        ),
        NativeSplit(
            "rank_tophalf",
            "adapter_rank",
            "rankcomp_tophalf",
            top(lambda r: max(1, r // 2)),
            "rankcomp_tophalf",
            "rankcomp_tophalf_residual",
        ),
    ]


def _lora_splits(adapter: Adapter) -> list[NativeSplit]:
    def poles(name: str, delta: Delta) -> tuple[Delta, Delta]:
        pos = _sum(_lora_components(adapter, "positive", name), 1.0, delta)
        neg = _sum(_lora_components(adapter, "negative", name), -1.0, delta)
        return pos, neg

    def top(count: Callable[[int], int]) -> Callable[[str, Delta], tuple[Delta, Delta]]:
        def split(name: str, delta: Delta) -> tuple[Delta, Delta]:
            keep: Delta = _sum([], 1.0, delta)
            drop: Delta = _sum([], 1.0, delta)
            for pole, sign in (("positive", 1.0), ("negative", -1.0)):
                parts = _lora_components(adapter, pole, name)
                n = count(len(parts))
                keep = _join(keep, _sum(parts[:n], sign, delta))
                drop = _join(drop, _sum(parts[n:], sign, delta))
            return keep, drop

        return split

    return pole_and_rank_splits(poles, top)


def _dora_splits(adapter: Adapter, model: nn.Module) -> list[NativeSplit]:
    weights = dict(model.named_parameters())

    def parts(name: str) -> dict[str, torch.Tensor]:
        w0 = weights[name].detach().float().cpu()
        base_norm = w0.norm(dim=1)
        out = {"dir": torch.zeros_like(w0), "mag": torch.zeros_like(w0), "full": torch.zeros_like(w0)}
        for pole, sign in (("positive", 1.0), ("negative", -1.0)):
            module, params = _module(name), adapter.params
            up = _get(params, f"{pole}/{module}/lora_B.default.weight", adapter)
            down = _get(params, f"{pole}/{module}/lora_A.default.weight", adapter)
            scale = float(_get(params, f"{pole}/{module}/scaling", adapter)[0])
            magnitude = _get(
                params, f"{pole}/{module}/lora_magnitude_vector.default.weight", adapter
            ).reshape(-1)
            moved = w0 + scale * (up @ down)
            norm = moved.norm(dim=1)
            out["dir"] += sign * ((base_norm / norm)[:, None] * moved - w0)
            out["mag"] += sign * ((magnitude / base_norm)[:, None] * w0 - w0)
            out["full"] += sign * ((magnitude / norm)[:, None] * moved - w0)
        return out

    def split(kind: str) -> Callable[[str, Delta], tuple[Delta, Delta]]:
        def fn(name: str, delta: Delta) -> tuple[Delta, Delta]:
            found = parts(name)
            # the saved parameters must reproduce the saved dW (else they belong to another delta)
            bases.check_split(
                "dora parameters", f"{adapter.label}: {name}", delta, found["full"], found["full"] * 0
            )
            return found[kind], bases.dense_of(delta) - found[kind]

        return fn

    return [
        NativeSplit(
            "dora_direction",
            "dora",
            "dora_direction",
            split("dir"),
            "dora_direction_only",
            "dora_direction_residual",
        ),
        NativeSplit(
            "dora_magnitude",
            "dora",
            "dora_magnitude",
            split("mag"),
            "dora_magnitude_only",
            "dora_magnitude_residual",
        ),
    ]


SplitMaker = Callable[[Adapter, nn.Module, Mapping[str, Any]], list[NativeSplit]]
NATIVE_SPLITS: Registry[SplitMaker] = Registry("family-native split")
"""Adapter family -> the function building its native splits (a family without one gets none, logged)."""


def _ia3_splits(adapter: Adapter, model: nn.Module, info: Mapping[str, Any]) -> list[NativeSplit]:
    def gates(name: str, delta: Delta) -> tuple[Delta, Delta]:
        zero = bases.dense_of(delta) * 0.0
        return (delta, zero) if getattr(info[name], "role", "") in ATTENTION_ROLES else (zero, delta)

    return [
        NativeSplit(
            "ia3_gates", "ia3", "ia3_attention_gates", gates, "ia3_attention_gates_only", "ia3_mlp_gates_only"
        )
    ]


def _delora(adapter: Adapter, model: nn.Module, info: Mapping[str, Any]) -> list[NativeSplit]:
    from steerlab.analysis.native_delora import delora_splits

    return delora_splits(adapter, model)


def _oft(adapter: Adapter, model: nn.Module, info: Mapping[str, Any]) -> list[NativeSplit]:
    from steerlab.analysis.native_oft import oft_splits

    return oft_splits(adapter, model)


NATIVE_SPLITS.add("lora", lambda adapter, model, info: _lora_splits(adapter))
NATIVE_SPLITS.add("pissa", lambda adapter, model, info: _lora_splits(adapter))
NATIVE_SPLITS.add("dora", lambda adapter, model, info: _dora_splits(adapter, model))
NATIVE_SPLITS.add("ia3", _ia3_splits)
NATIVE_SPLITS.add("delora", _delora)
NATIVE_SPLITS.add("oft", _oft)


def native_variants(adapter: Adapter, model: nn.Module, info: Mapping[str, Any]) -> list[NativeSplit]:
    """The family-native splits of `adapter` (requires its adapter parameters)."""
    require_params(adapter)
    config = adapter.delta.meta.get("config") or {}
    if isinstance(config, dict) and config.get("bisector"):
        log.warning("%s: bisector-mode delta; family-native splits are skipped", adapter.label)
        return []
    if adapter.family not in NATIVE_SPLITS:
        log.warning("%s: no family-native split for adapter family %r yet", adapter.label, adapter.family)
        return []
    return NATIVE_SPLITS.get(adapter.family)(adapter, model, info)


def native_reshapes(adapter: Adapter, generator: torch.Generator) -> dict[str, dict[str, Delta]]:
    """DeLoRA's norm/direction reshapes of the whole delta (empty for other families)."""
    if adapter.family != "delora":
        return {}
    require_params(adapter)
    deltas = adapter.delta.deltas
    norms = {n: math.sqrt(bases.energy(d)) for n, d in deltas.items()}
    rms = math.sqrt(sum(v * v for v in norms.values()) / len(norms))
    order = torch.randperm(len(norms), generator=generator).tolist()
    shuffled = dict(zip(norms, [list(norms.values())[i] for i in order], strict=True))

    def rescaled(target: dict[str, float]) -> dict[str, Delta]:
        return {n: bases.dense_of(d) * (target[n] / (norms[n] or 1.0)) for n, d in deltas.items()}

    return {
        "dir_only": rescaled(dict.fromkeys(norms, rms)),
        "mag_only": {n: bases.random_like(d, norms[n], generator) for n, d in deltas.items()},
        "random_norm": rescaled(shuffled),
    }
