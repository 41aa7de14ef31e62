"""Subspace overlap between adapters' top-K own-SVD subspaces on the residual side, per tensor."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pandas as pd
from torch import nn

from steerlab.analysis import bases
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.variants import tensor_info

__all__ = ["subspace_overlaps"]


def subspace_overlaps(adapters: Sequence[Adapter], model: nn.Module, k: int = 8) -> pd.DataFrame:
    """One row per (tensor, adapter pair): mean cos^2 of the principal angles between the top-k subspaces
    (1 = the same subspace; ``expected_random`` = k/d for random ones). Includes each adapter with itself."""
    names = sorted(set.intersection(*[set(a.delta.deltas) for a in adapters])) if adapters else []
    info = tensor_info(model, names)
    records = []
    for name in names:
        side = info[name].side
        tops = {}
        for adapter in adapters:
            delta = adapter.delta.deltas[name]
            rank = bases.own_thin_svd(delta).rank
            tops[adapter.label] = bases.top_subspace(delta, side, min(k, rank))
        dim = bases.residual_dim(adapters[0].delta.deltas[name], side)
        for a, b in itertools.combinations_with_replacement(adapters, 2):
            records.append(
                {
                    "tensor": name,
                    "layer": info[name].layer,
                    "role": info[name].role,
                    "adapter_a": a.label,
                    "adapter_b": b.label,
                    "family_a": a.family,
                    "family_b": b.family,
                    "k": k,
                    "overlap": bases.subspace_overlap(tops[a.label], tops[b.label]),
                    "expected_random": min(k, dim) / dim,
                }
            )
    return pd.DataFrame.from_records(records)
