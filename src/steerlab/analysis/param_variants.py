"""The ``param`` family: own-SVD S-space crops and energy groups, and the base weight's SVD lens."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from steerlab.analysis import bases
from steerlab.analysis.variants import VariantBuilder, VariantOptions, clip_k
from steerlab.interventions.weight import Delta

__all__ = ["param_variants"]


def _crop(group: str, name: str, delta: Delta) -> tuple[Delta, Delta]:
    return bases.index_split(delta, _crop_indices(bases.own_thin_svd(delta).s, group))


def _crop_indices(s: torch.Tensor, group: str) -> list[int]:
    r = len(s)
    if group == "top_25pct_S":
        return list(range(math.ceil(0.25 * r)))
    if group == "mid_50pct_S":
        return list(range(math.ceil(0.25 * r), math.ceil(0.75 * r)))
    if group == "bottom_25pct_S":
        return list(range(math.ceil(0.75 * r), r))
    share = 0.5 if group == "top_50pct_energy" else 0.9
    cumulative = torch.cumsum(s.pow(2), 0) / float(s.pow(2).sum())
    return list(range(int(torch.searchsorted(cumulative, torch.tensor(share, dtype=s.dtype))) + 1))


def _base_lens(
    weights: dict[str, torch.nn.Parameter], k: int | None, name: str, delta: Delta
) -> tuple[Delta, Delta]:
    base = weights[name].detach().float().cpu()
    return bases.base_lens_split(delta, base, k, svd=bases.base_svd(weights[name]))


def param_variants(b: VariantBuilder, model: nn.Module, options: VariantOptions) -> None:
    for group in ("top_25pct_S", "mid_50pct_S", "bottom_25pct_S", "top_50pct_energy", "top_90pct_energy"):
        basis = "own_svd_energy" if "energy" in group else "own_svd_S"
        b.split(
            group,
            "param",
            basis,
            group,
            functools.partial(_crop, group),
            keep=group,
            drop=f"{group}_residual",
        )
    weights = dict(model.named_parameters())
    b.split(
        "base_diag",
        "param",
        "base_svd",
        "base_diag",
        functools.partial(_base_lens, weights, None),
    )
    k = options.base_k
    limit = min(min(d.shape) for d in b.full.deltas.values())
    if clip_k(k, limit, options, f"the smallest tensor dimension of {b.adapter.label}") is not None:
        b.split(
            f"base_top{k}",
            "param",
            "base_svd",
            f"base_top{k}",
            functools.partial(_base_lens, weights, k),
        )
