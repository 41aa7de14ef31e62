"""A thin SVD kept by its smaller side: ``A = U diag(S) Vh`` with only ``S`` and one factor stored.

A dense m x n matrix's thin SVD has min(m, n) components, so its larger factor is as big as the matrix
itself (in float64, twice its float32 bytes). The ablation memos hold one SVD per tensor for a whole adapter
(own SVDs) or run (base-weight SVDs), so they store ``S`` and the factor on the smaller side only and
rebuild the columns of the other factor that a split asks for from the matrix, which is alive anyway
(the delta or the base weight): ``U[:, i] S[i] = A V[:, i]`` and ``S[i] Vh[i] = U[:, i]^T A``. The
rebuilt columns equal LAPACK's up to float64 round-off (the matrix enters exactly, as float32 widened).
A low-rank delta's SVD is small (rank r): both factors are stored and nothing is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ThinSVD", "thin_svd"]


@dataclass(frozen=True, eq=False)
class ThinSVD:
    """``S`` (descending, float64) plus ``U`` or ``Vh`` (or both); `source` rebuilds the missing one."""

    s: torch.Tensor
    u: torch.Tensor | None = None  # m x r
    vh: torch.Tensor | None = None  # r x n
    source: torch.Tensor | None = None  # the m x n matrix (any float dtype); needed when u or vh is None

    @property
    def rank(self) -> int:
        return len(self.s)

    def memo_nbytes(self) -> int:
        """Bytes this object owns (the source belongs to its caller and is not counted)."""
        return sum(t.numel() * t.element_size() for t in (self.s, self.u, self.vh) if t is not None)

    def _matrix(self) -> torch.Tensor:
        if self.source is None:
            raise ValueError("ThinSVD stores one factor only and has no source matrix to rebuild the other")
        return self.source.detach().double()

    def scaled_left(self, index: torch.Tensor | slice) -> torch.Tensor:
        """``U[:, index] * S[index]`` (m x k, float64)."""
        if self.u is not None:
            return self.u[:, index] * self.s[index]
        assert self.vh is not None
        return self._matrix() @ self.vh[index].T

    def right(self, index: torch.Tensor | slice) -> torch.Tensor:
        """``Vh[index]`` (k x n, float64)."""
        if self.vh is not None:
            return self.vh[index]
        assert self.u is not None
        return (self.u[:, index].T @ self._matrix()) / self.s[index, None]

    def left(self, index: torch.Tensor | slice) -> torch.Tensor:
        """``U[:, index]`` (m x k, float64)."""
        if self.u is not None:
            return self.u[:, index]
        return self.scaled_left(index) / self.s[index]

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The full ``(U, S, Vh)``, the missing factor rebuilt (as big as the matrix: transient use only)."""
        every = slice(None)
        return self.left(every), self.s, self.right(every)


def thin_svd(matrix: torch.Tensor, rel_tol: float | None = None) -> ThinSVD:
    """The thin SVD of a dense matrix (computed in float64) kept by its smaller factor; with `rel_tol`,
    components with ``S <= rel_tol * S[0]`` (numerically zero) are dropped."""
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    if rel_tol is not None:
        keep = s > (float(s[0]) * rel_tol if len(s) and float(s[0]) > 0 else 0.0)
        u, s, vh = u[:, keep], s[keep], vh[keep]
    if matrix.shape[0] >= matrix.shape[1]:  # tall: V is the smaller factor; U (as big as A) is dropped
        return ThinSVD(s, vh=vh, source=matrix)
    return ThinSVD(s, u=u, source=matrix)
