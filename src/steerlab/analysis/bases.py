"""Lenses on a weight delta: projections onto bases and singular-value crops that keep low rank low.

Every split returns ``(keep, drop)`` with ``keep + drop == dW`` (checked by `check_split`). A low-rank
delta ``dW = up @ down`` stays factored: a projection on the residual side touches only one factor, an
own-SVD crop is a QR of the factors plus an SVD of the small r x r core.

The residual-stream side of a tensor: residual-writing tensors (o_proj, down_proj) have the residual on
their output (left) side, residual-reading ones (q, k, v, gate, up) on their input (right) side. A basis
B (d x K, orthonormal columns) then acts as ``B B^T dW`` (left) or ``dW B B^T`` (right).
"""

from __future__ import annotations

import math

import torch

from steerlab.analysis import memo
from steerlab.analysis.thin_svd import ThinSVD, thin_svd
from steerlab.interventions.weight import Delta, LowRankDelta

__all__ = [
    "RECON_TOL",
    "ReconstructionError",
    "base_lens_split",
    "base_svd",
    "check_split",
    "dense_of",
    "energy",
    "index_split",
    "own_svd",
    "own_thin_svd",
    "projection_split",
    "random_basis",
    "random_like",
    "residual_dim",
    "shared_basis",
    "subspace_overlap",
    "top_subspace",
]

RECON_TOL = 1e-4
"""keep + drop must reconstruct dW per tensor to ||keep + drop - dW||_F <= RECON_TOL * ||dW||_F (+1e-8)."""


class ReconstructionError(RuntimeError):
    """A split's component and residual do not add up to the delta."""


def dense_of(delta: Delta) -> torch.Tensor:
    return delta.dense() if isinstance(delta, LowRankDelta) else delta


def energy(delta: Delta) -> float:
    """Squared Frobenius norm, without densifying a low-rank delta."""
    if isinstance(delta, LowRankDelta):
        gram = (delta.up.double().T @ delta.up.double()) * (delta.down.double() @ delta.down.double().T)
        return float(gram.sum().clamp(min=0.0))
    return float(delta.double().pow(2).sum())


def residual_dim(delta: Delta, side: str) -> int:
    return int(delta.shape[0] if side == "left" else delta.shape[1])


def check_split(name: str, where: str, full: Delta, keep: Delta, drop: Delta) -> float:
    """Raise unless keep + drop == full within RECON_TOL (relative); return the relative error."""
    reference = dense_of(full).double()
    error = float((dense_of(keep).double() + dense_of(drop).double() - reference).norm())
    scale = float(reference.norm())
    if error > RECON_TOL * scale + 1e-8:
        raise ReconstructionError(
            f"{where}: split {name!r} of tensor does not reconstruct dW: ||keep + drop - dW|| = {error:.3g} "
            f"> {RECON_TOL:g} x ||dW|| = {RECON_TOL * scale:.3g}"
        )
    return error / scale if scale else 0.0


def projection_split(delta: Delta, basis: torch.Tensor, side: str) -> tuple[Delta, Delta]:
    """(B B^T dW, dW - B B^T dW) on the left side, (dW B B^T, dW - dW B B^T) on the right; rank kept."""
    basis = basis.to(torch.float32)
    if isinstance(delta, LowRankDelta):
        if side == "left":
            projected = basis @ (basis.T @ delta.up)
            return LowRankDelta(projected, delta.down), LowRankDelta(delta.up - projected, delta.down)
        projected = (delta.down @ basis) @ basis.T
        return LowRankDelta(delta.up, projected), LowRankDelta(delta.up, delta.down - projected)
    kept = basis @ (basis.T @ delta) if side == "left" else (delta @ basis) @ basis.T
    return kept, delta - kept


OWN_SVD_REL_TOL = 1e-7
"""Own-SVD components with S <= OWN_SVD_REL_TOL * S[0] are dropped as numerically zero."""


def dense_rank_tolerance(delta: torch.Tensor) -> float:
    """The relative cut below which a dense delta's singular values are round-off: max(m, n) * eps of its
    dtype (the usual numerical-rank rule), at least OWN_SVD_REL_TOL.

    A dense delta is often a difference of merged float32 weights (DeLoRA, OFT): a rank-2r update then
    carries ~500 round-off components at ~1e-6 S[0]. Left in, they would fill the S-space crops
    (``bottom_25pct_S`` would be pure noise) and the own ``topK`` / tail splits past the true rank.
    """
    eps = torch.finfo(delta.dtype).eps if delta.is_floating_point() else 0.0
    return max(OWN_SVD_REL_TOL, max(delta.shape[-2:]) * eps)


def own_svd(delta: Delta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (U, S, Vh) of dW in float64, with numerically zero singular values removed.

    The full factors, rebuilt from `own_thin_svd` on each call; the splits use `own_thin_svd` directly.
    """
    return own_thin_svd(delta).factors()


def own_thin_svd(delta: Delta) -> ThinSVD:
    """dW's own SVD (as `own_svd`), kept by its smaller factor when dW is dense (see `thin_svd`).

    Inside `memo.memoized("own_svd")` each delta object's SVD is computed once (callers must not modify it).
    """
    cache = memo.active("own_svd")
    if cache is None:
        return _own_svd(delta)
    return cache.get(id(delta), delta, lambda: _own_svd(delta))


def _own_svd(delta: Delta) -> ThinSVD:
    if isinstance(delta, LowRankDelta):
        q_up, r_up = torch.linalg.qr(delta.up.double())
        q_down, r_down = torch.linalg.qr(delta.down.double().T)
        u, s, vh = torch.linalg.svd(r_up @ r_down.T, full_matrices=False)
        u, vh = q_up @ u, vh @ q_down.T
        keep = s > (float(s[0]) * OWN_SVD_REL_TOL if len(s) and float(s[0]) > 0 else 0.0)
        return ThinSVD(s[keep], u=u[:, keep], vh=vh[keep])
    return thin_svd(delta, dense_rank_tolerance(delta))


def index_split(delta: Delta, indices: list[int]) -> tuple[Delta, Delta]:
    """Keep the own-SVD components at `indices` (a low-rank delta); the rest is the residual."""
    svd = own_thin_svd(delta)
    chosen = torch.tensor(sorted(set(indices)), dtype=torch.long)
    if len(chosen) and int(chosen.max()) >= svd.rank:
        raise ValueError(
            f"singular component {int(chosen.max())} requested, but the tensor has rank {svd.rank}"
        )
    keep = LowRankDelta(svd.scaled_left(chosen).float(), svd.right(chosen).float())
    if isinstance(delta, LowRankDelta):
        rest = torch.tensor([i for i in range(svd.rank) if i not in set(indices)], dtype=torch.long)
        return keep, LowRankDelta(svd.scaled_left(rest).float(), svd.right(rest).float())
    return keep, delta - keep.dense()


def random_basis(dim: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """K orthonormal columns drawn uniformly (QR of a Gaussian matrix)."""
    q, r = torch.linalg.qr(torch.randn(dim, k, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def random_like(delta: Delta, norm: float, generator: torch.Generator) -> Delta:
    """A random delta of the same shape and rank structure, scaled to Frobenius norm `norm`."""
    if isinstance(delta, LowRankDelta):
        up = torch.randn(delta.up.shape, generator=generator)
        down = torch.randn(delta.down.shape, generator=generator)
        current = math.sqrt(energy(LowRankDelta(up, down))) or 1.0
        return LowRankDelta(up * (norm / current), down)
    dense = torch.randn(delta.shape, generator=generator)
    return dense * (norm / (float(dense.norm()) or 1.0))


def top_subspace(delta: Delta, side: str, k: int) -> torch.Tensor:
    """The top-k singular vectors of dW on its residual side (d x k, float64)."""
    svd = own_thin_svd(delta)
    return svd.left(slice(0, k)) if side == "left" else svd.right(slice(0, k)).T


def shared_basis(deltas: list[Delta], side: str, k: int, max_k: int | None = None) -> torch.Tensor:
    """Top-k left (right) singular vectors of the adapters' deltas stacked side by side (on top of each other).

    Each delta is normalised to unit Frobenius norm first, so no family dominates by its scale alone.
    Computed from the d x d Gram matrix, which is cheap for low-rank deltas. Inside
    `memo.memoized("shared_basis")` the top-`max_k` vectors of the same deltas are computed once and sliced.
    """
    cache = memo.active("shared_basis")
    if cache is None:
        return _shared_basis(deltas, side, k)
    key = ("shared_basis", side, *(id(d) for d in deltas))
    stored = cache.get(key, list(deltas), lambda: _shared_basis(deltas, side, max(k, max_k or k)))
    if stored.shape[1] < k and stored.shape[1] < residual_dim(deltas[0], side):
        return _shared_basis(deltas, side, k)
    return stored[:, :k].contiguous()


def _shared_basis(deltas: list[Delta], side: str, k: int) -> torch.Tensor:
    dim = residual_dim(deltas[0], side)
    gram = torch.zeros(dim, dim, dtype=torch.float64)
    for delta in deltas:
        scale = 1.0 / (math.sqrt(energy(delta)) or 1.0)
        if isinstance(delta, LowRankDelta):
            up, down = delta.up.double() * scale, delta.down.double()
            if side == "left":
                gram += up @ (down @ down.T) @ up.T
            else:
                gram += down.T @ (up.T @ up) @ down
        else:
            dense = delta.double() * scale
            gram += dense @ dense.T if side == "left" else dense.T @ dense
    values, vectors = torch.linalg.eigh(gram)
    order = torch.argsort(values, descending=True)[:k]
    return vectors[:, order].float()


def subspace_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """||A^T B||_F^2 / k: 1 for the same k-dim subspace, ~k/d for random ones (mean cos^2 principal angle)."""
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        return float("nan")
    return float((a[:, :k].double().T @ b[:, :k].double()).pow(2).sum()) / k


def base_svd(weight: torch.Tensor) -> ThinSVD:
    """A base weight's thin SVD in float64, kept by its smaller factor (`thin_svd`); once per weight object
    inside `memo.memoized("base_svd")` (the weight must not change while the memo is open)."""

    def compute() -> ThinSVD:
        return thin_svd(weight.detach().float().cpu())

    cache = memo.active("base_svd")
    return compute() if cache is None else cache.get(id(weight), weight, compute)


def base_lens_split(
    delta: Delta,
    base: torch.Tensor,
    k: int | None,
    svd: ThinSVD | None = None,
) -> tuple[Delta, Delta]:
    """The base weight's SVD lens: with W0 = U0 S0 V0^T and dS = U0^T dW V0, keep the diagonal of dS
    (k None: dW along the pretrained singular pairs) or the top-k x top-k block (dW inside the top-k
    pretrained input and output directions). `svd`: the SVD of `base` if already known (`base_svd`)."""
    if svd is None:
        svd = thin_svd(base)
    dense = dense_of(delta).double()
    if k is None:
        u0, _, v0h = svd.factors()
        diagonal = torch.einsum("oi,oj,ij->i", u0, dense, v0h)  # u0_i^T dW v0_i
        kept = LowRankDelta((u0 * diagonal).float(), v0h.float())
    else:
        uk, vk = svd.left(slice(0, k)), svd.right(slice(0, k)).T
        if isinstance(delta, LowRankDelta):
            up = uk @ (uk.T @ delta.up.double())
            down = (delta.down.double() @ vk) @ vk.T
            kept = LowRankDelta(up.float(), down.float())
            rest = LowRankDelta(
                torch.cat([delta.up, -kept.up], dim=1), torch.cat([delta.down, kept.down], dim=0)
            )
            return kept, rest
        kept_dense = uk @ (uk.T @ dense @ vk) @ vk.T
        return kept_dense.float(), (dense - kept_dense).float()
    if isinstance(delta, LowRankDelta):
        return kept, LowRankDelta(
            torch.cat([delta.up, -kept.up], dim=1), torch.cat([delta.down, kept.down], dim=0)
        )
    return kept, (dense - kept.dense().double()).float()
