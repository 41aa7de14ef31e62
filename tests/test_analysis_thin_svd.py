"""steerlab.analysis.thin_svd: a dense delta's memoized own SVD keeps only its numerical rank and its smaller
factor, and the splits built from it equal those of the full LAPACK SVD (the previous store) and of the same
delta held factored."""

from __future__ import annotations

import pytest
import torch

from steerlab.analysis import bases, memo
from steerlab.analysis.thin_svd import thin_svd
from steerlab.interventions import LowRankDelta


def _rank_deficient(out: int, inp: int, rank: int) -> tuple[torch.Tensor, LowRankDelta]:
    """A dense float32 delta of exact rank `rank` (small integer factors: the product is exact) and its factors."""
    g = torch.Generator().manual_seed(out * 7 + inp)
    up = torch.randint(-4, 5, (out, rank), generator=g).float()
    down = torch.randint(-4, 5, (rank, inp), generator=g).float()
    return up @ down, LowRankDelta(up, down)


def _full_svd_split(dense: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """The kept part as the full float64 SVD (U and Vh both from LAPACK) gives it."""
    u, s, vh = torch.linalg.svd(dense.double(), full_matrices=False)
    chosen = torch.tensor(indices)
    return (u[:, chosen] * s[chosen]) @ vh[chosen]


@pytest.mark.parametrize("shape", [(48, 20), (20, 48), (24, 24)])
def test_rank_deficient_dense_delta_gets_a_truncated_memo_entry_and_the_same_splits(shape):
    rank = 5
    dense, factored = _rank_deficient(*shape, rank)
    with memo.memoized("own_svd"):
        keep, drop = bases.index_split(dense, [0, 2])
        top = bases.top_subspace(dense, "left", 3)
        cache = memo.active("own_svd")
        assert cache is not None and len(cache.entries) == 1
        (entry,) = [value for _, value in cache.entries.values()]
        assert entry.rank == rank  # numerically zero components dropped
        small = min(shape)
        assert (entry.u is None) != (entry.vh is None)  # only the smaller factor is stored
        assert cache.bytes == (rank * small + rank) * 8  # float64 S plus one r x min(m, n) factor
        assert cache.bytes < small * (shape[0] + shape[1] + 1) * 8 / 4  # the full SVD's factors: 4x more
        assert bases.index_split(dense, [0, 2])[0].up.data_ptr() != keep.up.data_ptr()  # rebuilt each time
        assert cache.hits >= 2
    bases.check_split("top", "t", dense, keep, drop)
    assert isinstance(keep, LowRankDelta) and keep.rank == 2
    reference = _full_svd_split(dense, [0, 2])
    scale = float(reference.norm())
    assert float((keep.dense().double() - reference).norm()) <= 1e-6 * scale
    # the same split of the same delta held factored (QR of the factors + small SVD)
    keep_f, _ = bases.index_split(factored, [0, 2])
    assert float((keep.dense().double() - keep_f.dense().double()).norm()) <= 1e-5 * scale
    # the top singular vectors span the same subspace as the factored delta's
    overlap = bases.subspace_overlap(top, bases.top_subspace(factored, "left", 3))
    assert overlap == pytest.approx(1.0, abs=1e-6)


def test_thin_svd_rebuilds_either_factor_and_the_full_factors():
    g = torch.Generator().manual_seed(4)
    for matrix in (torch.randn(30, 12, generator=g), torch.randn(12, 30, generator=g)):
        svd = thin_svd(matrix)
        u, s, vh = svd.factors()
        torch.testing.assert_close(u * s @ vh, matrix.double(), atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(u.T @ u, torch.eye(12, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(vh @ vh.T, torch.eye(12, dtype=torch.float64), atol=1e-10, rtol=0)
        assert svd.memo_nbytes() == (12 * 12 + 12) * 8


def test_memo_counts_what_a_thin_svd_owns_against_its_cap():
    dense, _ = _rank_deficient(40, 16, 4)
    with memo.memoized("own_svd", max_bytes=10):  # too small for one entry: nothing kept
        bases.index_split(dense, [0])
        cache = memo.active("own_svd")
        assert cache is not None and cache.bytes == 0 and not cache.entries
