"""OFT's family-native split: the rotation-derived (skew) part of dW vs the residual of the effective update.

PEFT's OFT (peft.tuners.oft, 0.21) rotates the *input* of a linear layer block-wise: the forward pass is
``base_layer(x @ R)`` with ``R = block_diag(R_1, ..., R_n)``, so the merged weight of one pole is
``W0 @ R.T`` and its change is ``W0 (R - I).T``. Each block ``R_i`` is the Cayley map of a skew-symmetric
``Q_i`` built from the trained vector ``oft_R.default.weight[i]`` (its strict upper triangle): exactly
``(I - Q)(I + Q)^-1`` or, PEFT's default, the Neumann series ``I + 2Q + 2Q^2 + ... + Q^(n-1)`` with ``n``
terms. The contrastive delta of the two poles is therefore

    dW = W0 (R_pos - R_neg).T = W0 D.T,        D = R_pos - R_neg.

The split writes D as its skew and symmetric parts, D = S + Y with S = (D - D.T)/2, Y = (D + D.T)/2:

- ``oft_rotation_skew`` (keep) = W0 S.T: the rotation-derived, first-order part. For a rotation
  R = I + 2Q + O(Q^2) (up to PEFT's sign convention), skew(R - I) = +-2Q + O(Q^3): the part linear in the
  trained generators, i.e. what the two poles' rotations do to first order.
- ``oft_rotation_residual`` (drop) = dW - W0 S.T: the residual of the effective update: the symmetric part
  W0 Y.T, which for an orthogonal R is sym(R - I) = -1/2 (R - I).T (R - I), second order in Q, plus anything
  in the saved dW that the two rotations do not explain (float rounding of merge-and-subtract).

keep + drop == dW holds by construction; separately, W0 D.T must reproduce the saved dW per tensor within
``RECON_TOL * ||dW|| + PARAM_ATOL * ||W0||`` (the second term allows float32 rounding of W0 + change - W0),
else the parameters belong to another delta (or another OFT variant) and the run stops with one line.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from steerlab.analysis import bases
from steerlab.analysis.inputs import AblationInputError, Adapter
from steerlab.interventions.weight import Delta

if TYPE_CHECKING:
    from steerlab.analysis.native import NativeSplit

__all__ = ["PARAM_ATOL", "check_reproduces", "oft_rotation", "oft_skew_split", "oft_splits"]

PARAM_ATOL = 1e-6
"""Absolute slack, relative to ||W0||_F, when saved parameters must reproduce a merged-minus-base dW."""


def _default_neumann_terms() -> int:
    """PEFT's OFTConfig defaults (for parameters saved before steerlab recorded the setting)."""
    from peft import OFTConfig

    defaults = OFTConfig()
    return int(defaults.num_cayley_neumann_terms) if defaults.use_cayley_neumann else 0


def _skew(vectors: torch.Tensor, block_size: int) -> torch.Tensor:
    rows, cols = torch.triu_indices(block_size, block_size, 1)
    matrix = torch.zeros(vectors.shape[0], block_size, block_size, dtype=vectors.dtype)
    matrix[:, rows, cols] = vectors
    return matrix - matrix.transpose(-2, -1)


def _cayley(q: torch.Tensor, neumann_terms: int) -> torch.Tensor:
    """PEFT's `_cayley_batch`: the Neumann series with `neumann_terms` terms, or the exact map when 0."""
    eye = torch.eye(q.shape[-1], dtype=q.dtype).expand_as(q)
    if neumann_terms <= 0:
        return torch.linalg.solve(eye + q, eye - q, left=False)
    r = eye.clone()
    if neumann_terms > 1:
        r = r + 2.0 * q
        if neumann_terms > 2:
            power = q @ q
            r = r + 2.0 * power
            for _ in range(3, neumann_terms - 1):
                power = power @ q
                r = r + 2.0 * power
            r = r + power @ q
    return r


def oft_rotation(vectors: torch.Tensor, in_features: int, neumann_terms: int) -> torch.Tensor:
    """The [in, in] block-diagonal R (float64) of one OFT layer from its trained ``oft_R`` weight [blocks, n]."""
    n = vectors.shape[1]
    block_size = int(round((1 + math.sqrt(1 + 8 * n)) / 2))
    if block_size * (block_size - 1) // 2 != n or in_features % block_size:
        raise ValueError(f"oft_R has {n} elements per block: not a block of a {in_features}-wide input")
    blocks = _cayley(_skew(vectors.double(), block_size), neumann_terms)
    count = in_features // block_size
    if blocks.shape[0] == 1 and count > 1:  # block_share: one rotation for every block
        blocks = blocks.expand(count, -1, -1)
    if blocks.shape[0] != count:
        raise ValueError(f"oft_R has {blocks.shape[0]} blocks, the input needs {count}")
    return torch.block_diag(*blocks)


def oft_skew_split(w0: torch.Tensor, r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    """W0 S.T with S the skew part of R_pos - R_neg (the rotation-derived part; see the module docstring)."""
    d = (r_pos - r_neg).double()
    return (w0.double() @ (0.5 * (d - d.T)).T).float()


def check_reproduces(where: str, delta: Delta, found: torch.Tensor, w0: torch.Tensor) -> None:
    """The saved adapter parameters must rebuild the saved dW (else they belong to another delta)."""
    reference = bases.dense_of(delta).double()
    error = float((found.double() - reference).norm())
    allowed = bases.RECON_TOL * float(reference.norm()) + PARAM_ATOL * float(w0.double().norm())
    if error > allowed:
        raise bases.ReconstructionError(
            f"{where}: the saved adapter parameters do not reproduce dW (||error|| = {error:.3g} > {allowed:.3g}); "
            "adapters.safetensors belongs to another delta"
        )


def oft_splits(adapter: Adapter, model: nn.Module) -> list[NativeSplit]:
    """OFT's rotation-derived part vs the residual of the effective update (see the module docstring)."""
    from steerlab.analysis.native import NativeSplit, get_param, module_of

    weights = dict(model.named_parameters())
    where = adapter.source or adapter.label

    def rotation(pole: str, name: str, in_features: int) -> torch.Tensor:
        module = module_of(name)
        vectors = get_param(adapter, f"{pole}/{module}/oft_R.default.weight")
        terms_key = f"{pole}/{module}/oft_neumann_terms"
        terms = int(adapter.params[terms_key][0]) if terms_key in adapter.params else _default_neumann_terms()
        try:
            return oft_rotation(vectors, in_features, terms)
        except ValueError as error:
            raise AblationInputError(f"{where}: {pole}/{module}: {error}") from None

    def split(name: str, delta: Delta) -> tuple[Delta, Delta]:
        w0 = weights[name].detach().double().cpu()
        r_pos, r_neg = (rotation(p, name, w0.shape[1]) for p in ("positive", "negative"))
        check_reproduces(f"{where}: {name}", delta, w0 @ (r_pos - r_neg).T, w0)
        keep = oft_skew_split(w0, r_pos, r_neg)
        return keep, bases.dense_of(delta) - keep

    return [
        NativeSplit(
            "oft_rotation", "oft", "oft_rotation", split, "oft_rotation_skew", "oft_rotation_residual"
        )
    ]
