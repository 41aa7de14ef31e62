"""DeLoRA's family-native splits: the poles and the rank components of each pole's update.

PEFT's DeLoRA (peft.tuners.delora, 0.21) changes a weight W0 [out, in] of one pole by

    dW_pole = B diag(lambda / r / (|A_j| |B^j|)) A  *  w_norm[None, :]

with A [r, in], B [out, r], lambda a learned scalar, |A_j| the row norms of A and |B^j| the column norms of
B (each clamped below at 1e-4), and w_norm = ||W0[:, i]|| the base weight's column norms (fixed at init).
So dW_pole is a sum of r rank-1 components, each of Frobenius norm lambda / r times its direction's
w_norm-weighted size: component j is ``(s_j B[:, j]) (A[j] * w_norm)`` with s_j = lambda / r / (|A_j| |B^j|).

Splits, like LoRA's (`steerlab.analysis.native`): ``positive_pole_only`` (+dW_pos) vs ``negative_pole_only``;
``rankcomp_top1`` (each pole's largest-norm component, signed) and ``rankcomp_tophalf`` (its top r/2) vs their
residuals. The keep part is low-rank; the residual is dW minus it (dense, as DeLoRA's saved dW is), so keep +
residual == dW exactly, and separately the components of both poles must rebuild the saved dW (else the
parameters belong to another delta: one line, and the run stops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from steerlab.analysis import bases
from steerlab.analysis.native_oft import check_reproduces
from steerlab.interventions.weight import Delta, LowRankDelta

if TYPE_CHECKING:
    from steerlab.analysis.inputs import Adapter
    from steerlab.analysis.native import NativeSplit

__all__ = ["delora_components", "delora_splits"]

NORM_FLOOR = 1e-4  # PEFT clamps |A_j| and |B^j| below at this value


def delora_components(
    a: torch.Tensor, b: torch.Tensor, lam: float, w_norm: torch.Tensor
) -> list[LowRankDelta]:
    """The r rank-1 components of one pole's DeLoRA update, largest norm first."""
    r = a.shape[0]
    a_norm = a.norm(dim=1).clamp(min=NORM_FLOOR)
    b_norm = b.norm(dim=0).clamp(min=NORM_FLOOR)
    scale = lam / r / (a_norm * b_norm)
    parts = [LowRankDelta(b[:, j : j + 1] * scale[j], a[j : j + 1] * w_norm[None, :]) for j in range(r)]
    return sorted(parts, key=lambda p: -bases.energy(p))


def _signed_sum(parts: list[LowRankDelta], sign: float, shape: torch.Size) -> LowRankDelta:
    if not parts:
        return LowRankDelta(torch.zeros(shape[0], 0), torch.zeros(0, shape[1]))
    return LowRankDelta(torch.cat([p.up * sign for p in parts], 1), torch.cat([p.down for p in parts], 0))


def delora_splits(adapter: Adapter, model: nn.Module) -> list[NativeSplit]:
    """Poles and rank components of a DeLoRA delta (see the module docstring)."""
    from steerlab.analysis.native import get_param, module_of, pole_and_rank_splits

    weights = dict(model.named_parameters())
    where = adapter.source or adapter.label
    checked: set[str] = set()

    def components(pole: str, name: str) -> list[LowRankDelta]:
        module = module_of(name)
        a = get_param(adapter, f"{pole}/{module}/delora_A.default")
        b = get_param(adapter, f"{pole}/{module}/delora_B.default")
        lam = float(get_param(adapter, f"{pole}/{module}/delora_lambda.default").reshape(-1)[0])
        w_norm = weights[name].detach().float().cpu().norm(dim=0)
        return delora_components(a, b, lam, w_norm)

    def poles(name: str, delta: Delta) -> dict[str, list[LowRankDelta]]:
        found = {pole: components(pole, name) for pole in ("positive", "negative")}
        if name not in checked:
            shape = bases.dense_of(delta).shape
            rebuilt = (
                _signed_sum(found["positive"], 1.0, shape).dense()
                - _signed_sum(found["negative"], 1.0, shape).dense()
            )
            check_reproduces(f"{where}: {name}", delta, rebuilt, weights[name].detach().float().cpu())
            checked.add(name)
        return found

    def top(count: Callable[[int], int]) -> Callable[[str, Delta], tuple[Delta, Delta]]:
        def split(name: str, delta: Delta) -> tuple[Delta, Delta]:
            found, shape = poles(name, delta), bases.dense_of(delta).shape
            kept = [
                _signed_sum(parts[: count(len(parts))], sign, shape)
                for parts, sign in ((found["positive"], 1.0), (found["negative"], -1.0))
            ]
            keep = LowRankDelta(torch.cat([k.up for k in kept], 1), torch.cat([k.down for k in kept], 0))
            return keep, bases.dense_of(delta) - keep.dense()

        return split

    def positive(name: str, delta: Delta) -> tuple[Delta, Delta]:
        keep = _signed_sum(poles(name, delta)["positive"], 1.0, bases.dense_of(delta).shape)
        return keep, bases.dense_of(delta) - keep.dense()

    return pole_and_rank_splits(positive, top)
