"""steerlab.analysis.memo: variants built with the decomposition memos equal those built without, bitwise,
and each decomposition runs once (own SVD per delta, base SVD per weight, shared basis per tensor and side)."""

from __future__ import annotations

import torch

from steerlab.analysis import bases, memo
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.variants import VariantOptions, build_variants
from steerlab.interventions import LowRankDelta, WeightDelta
from steerlab.interventions.weight import Delta

FAMILIES = ("cross", "layer", "param")
OPTIONS = VariantOptions(shared_k=(2, 4, 8), own_k=(2, 4), random_draws=1, base_k=4)


def _adapter(model, label: str, seed: int, dense: bool) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    deltas: dict[str, Delta] = {}
    for name, p in model.named_parameters():
        if ".layers." in name and name.endswith("proj.weight"):
            out, inp = p.shape
            if dense:
                deltas[name] = torch.randn(out, inp, generator=g) * 0.01
            else:
                deltas[name] = LowRankDelta(
                    torch.randn(out, 6, generator=g), torch.randn(6, inp, generator=g)
                )
    meta = {"adapter_family": label, "seed": seed, "behavior": "tiny", "model_id": "tiny"}
    return Adapter(label, WeightDelta(deltas, meta=meta), label, seed, "tiny", "tiny", 1.0)


def _tensors(delta: Delta) -> list[torch.Tensor]:
    return [delta.up, delta.down] if isinstance(delta, LowRankDelta) else [delta]


def _build_all(model, adapters: list[Adapter]) -> dict[tuple[str, str], WeightDelta]:
    out = {}
    with memo.memoized("base_svd", "shared_basis"):  # as run_ablations does
        for adapter in adapters:
            for v in build_variants(adapter, adapters, model, FAMILIES, OPTIONS):
                out[(adapter.label, v.name)] = v.delta
    return out


def test_memoized_variants_equal_uncached_bitwise(model, monkeypatch):
    adapters = [_adapter(model, "lora", 0, dense=False), _adapter(model, "delora", 1, dense=True)]
    with monkeypatch.context() as patch:
        patch.setattr(memo, "DEFAULT_MAX_BYTES", 0)  # nothing kept: every decomposition recomputed
        reference = _build_all(model, adapters)
    cached = _build_all(model, adapters)
    assert list(cached) == list(reference) and len(cached) > 40
    for key, delta in cached.items():
        expected = reference[key]
        assert list(delta.deltas) == list(expected.deltas), key
        for name, d in delta.deltas.items():
            e = expected.deltas[name]
            assert type(d) is type(e), (key, name)
            for a, b in zip(_tensors(d), _tensors(e), strict=True):
                assert torch.equal(a, b), (key, name)


def test_each_decomposition_runs_once(model, monkeypatch):
    adapters = [_adapter(model, "lora", 0, dense=False), _adapter(model, "pissa", 1, dense=False)]
    n_tensors = len(adapters[0].delta.deltas)
    own: dict[int, int] = {}
    shared: list[tuple[int, str]] = []
    weight_svds: list[tuple[int, ...]] = []
    real_own, real_shared, real_svd = bases._own_svd, bases._shared_basis, torch.linalg.svd
    shapes = {tuple(p.shape) for n, p in model.named_parameters() if n.endswith("proj.weight")}

    def count_own(delta):
        own[id(delta)] = own.get(id(delta), 0) + 1
        return real_own(delta)

    def count_shared(deltas, side, k):
        shared.append((id(deltas[0]), side))
        return real_shared(deltas, side, k)

    def count_svd(a, *args, **kwargs):
        if tuple(a.shape) in shapes:  # the low-rank deltas' own SVDs are r x r
            weight_svds.append(tuple(a.shape))
        return real_svd(a, *args, **kwargs)

    monkeypatch.setattr(bases, "_own_svd", count_own)
    monkeypatch.setattr(bases, "_shared_basis", count_shared)
    monkeypatch.setattr(torch.linalg, "svd", count_svd)
    _build_all(model, adapters)
    assert own and set(own.values()) == {1}  # one SVD per delta object
    assert len(own) == 2 * n_tensors
    assert len(shared) == n_tensors  # once per tensor (and side), at the largest K, for both adapters
    assert len(weight_svds) == n_tensors  # base SVD once per weight, shared by both lenses and adapters


def test_a_memo_over_its_cap_keeps_nothing():
    cache = memo.Memo(max_bytes=10)
    calls = []
    key = object()
    for _ in range(2):
        cache.get(id(key), key, lambda: calls.append(1) or torch.zeros(8))
    assert len(calls) == 2 and cache.bytes == 0 and cache.hits == 0


def test_shared_basis_sliced_from_a_larger_k_is_bitwise_the_direct_one():
    g = torch.Generator().manual_seed(3)
    deltas: list[Delta] = [torch.randn(12, 20, generator=g), torch.randn(12, 20, generator=g)]
    direct = {k: bases.shared_basis(deltas, "right", k) for k in (2, 5, 9)}
    with memo.memoized("shared_basis"):
        for k in (2, 5, 9):
            assert torch.equal(bases.shared_basis(deltas, "right", k, max_k=9), direct[k])
