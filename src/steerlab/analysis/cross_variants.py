"""The ``cross`` family of ablation variants: the shared cross-adapter SVD basis, each adapter's own SVD
top-K and tails, and random null bases of the same K."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from steerlab.analysis import bases
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.variants import TensorInfo, VariantBuilder, VariantOptions, clip_k
from steerlab.interventions.weight import Delta

__all__ = ["cross_variants"]


def cross_variants(b: VariantBuilder, adapters: Sequence[Adapter], options: VariantOptions) -> None:
    """Splits of `b`'s adapter by the basis shared with `adapters`, by its own top-K, and random K nulls."""
    generator = torch.Generator().manual_seed(options.seed)
    for k in options.shared_k:
        bases_k: dict[str, torch.Tensor] = {}
        for name, delta in b.full.deltas.items():
            side = b.info[name].side
            dim = bases.residual_dim(delta, side)
            if clip_k(k, dim, options, f"the residual dimension of {name} in {b.adapter.label}") is None:
                continue
            peers = [a.delta.deltas[name] for a in adapters if name in a.delta.deltas]
            bases_k[name] = bases.shared_basis(peers, side, k, max_k=max(options.shared_k))
        if len(bases_k) < len(b.full.deltas):
            continue
        b.split(
            f"B_shared_K{k}",
            "cross",
            "shared_svd",
            f"shared_K{k}",
            functools.partial(_project, bases_k, b.info),
        )
        for draw in range(options.random_draws):
            randoms = {
                n: bases.random_basis(bases.residual_dim(d, b.info[n].side), k, generator)
                for n, d in b.full.deltas.items()
            }
            keep = {
                n: bases.projection_split(d, randoms[n], b.info[n].side)[0] for n, d in b.full.deltas.items()
            }
            dims = [bases.residual_dim(d, b.info[n].side) for n, d in b.full.deltas.items()]
            b.add(
                f"random_null_K{k}_draw{draw}",
                "cross",
                "random",
                f"random_K{k}",
                "keep",
                keep,
                expected=float(np.mean([min(k, dim) / dim for dim in dims])),
            )
    for k in options.own_k:
        ranks = {n: bases.own_thin_svd(d).rank for n, d in b.full.deltas.items()}
        limit = min(ranks.values())
        if clip_k(k, limit, options, f"the rank of a tensor of {b.adapter.label}") is None:
            continue
        b.split(
            f"top{k}",
            "cross",
            "own_svd",
            f"own_K{k}",
            functools.partial(_top, k),
            keep=f"top{k}",
            drop=f"tail{k}",
        )


def _project(
    basis: dict[str, torch.Tensor], info: dict[str, TensorInfo], name: str, delta: Delta
) -> tuple[Delta, Delta]:
    return bases.projection_split(delta, basis[name], info[name].side)


def _top(k: int, name: str, delta: Delta) -> tuple[Delta, Delta]:
    return bases.index_split(delta, list(range(k)))
