"""steerlab.prefix_reuse (ablate): a variant scored from the base's recorded hidden states equals the variant
scored with the full forward, exactly, whatever its first modified layer; other batches fall back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab import prefix_reuse as prefix
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.run import AblationConfig, _evaluate, run_ablations
from steerlab.interventions import LowRankDelta, WeightDelta
from steerlab.models import decoder_layer_prefix, decoder_layers, linear_modules, num_layers
from steerlab.testing import tiny_model
from test_analysis_run import EVAL, _yesno_eval  # noqa: F401  (the test eval and its fixture)


def _delta(model, layers: range, seed: int = 0, scale: float = 0.5) -> WeightDelta:
    """Random deltas on every linear weight of `layers` (dense and low-rank alternately)."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    stem = decoder_layer_prefix(model)
    deltas: dict[str, torch.Tensor | LowRankDelta] = {}
    for layer in layers:
        for i, path in enumerate(linear_modules(model, layer).values()):
            out, inp = params[f"{stem}.{layer}.{path}.weight"].shape
            if i % 2:
                deltas[f"{stem}.{layer}.{path}.weight"] = LowRankDelta(
                    torch.randn(out, 2, generator=g) * scale / out**0.5, torch.randn(2, inp, generator=g)
                )
            else:
                deltas[f"{stem}.{layer}.{path}.weight"] = (
                    torch.randn(out, inp, generator=g) * scale / out**0.5
                )
    meta = {"adapter_family": "lora", "seed": seed, "behavior": "tiny", "model_id": "tiny"}
    return WeightDelta(deltas, meta=meta)


def _config(**kwargs) -> AblationConfig:
    return AblationConfig(evals=(EVAL,), max_batch=2, n_boot=50, **kwargs)  # 3 batches per eval


def _count_layer_calls(model) -> tuple[list[int], list]:
    """Calls of each decoder layer's first child (not reached when the layer is passed through)."""
    counts = [0] * num_layers(model)
    handles = []
    for i, layer in enumerate(decoder_layers(model)):
        child = next(iter(layer.children()))
        handles.append(child.register_forward_pre_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1)))
    return counts, handles


SYSTEM = "You are a careful assistant. Answer every question with one word, Yes or No."


@pytest.mark.parametrize(
    ("architecture", "system"),
    [("llama", None), ("gpt2", None), ("gemma3_text", None), ("llama", SYSTEM), ("gpt2", SYSTEM)],
)
def test_reused_prefix_scores_equal_the_full_forward(tok, architecture, system):
    """With a system prompt the rows share a head that scoring runs once on a KV cache (steerlab.prefix_kv):
    the record then also keeps the head's keys and values for the skipped layers."""
    model = tiny_model(architecture, vocab_size=len(tok))
    n = num_layers(model)
    config = _config(eval_options={EVAL: {"system": system}})
    record = prefix.PrefixRecord(frozenset(range(1, n)))
    with prefix.recording(model, record):
        base = _evaluate(model, tok, None, EVAL, [0.0], None, config)
    assert record.usable and len(record.calls) == (4 if system else 3)  # + the head pass
    assert any(call.kv for call in record.calls.values()) == bool(system)
    for first in range(1, n):
        delta = _delta(model, range(first, n), seed=first)
        ys = {}
        for label, variant in (("delta", delta), ("zero", delta.scaled(0.0))):
            full = _evaluate(model, tok, variant, EVAL, [-2.0, 2.0], None, config)
            counts, handles = _count_layer_calls(model)
            try:
                with prefix.reusing(model, record, first):
                    reused = _evaluate(model, tok, variant, EVAL, [-2.0, 2.0], None, config)
            finally:
                for h in handles:
                    h.remove()
            assert counts[:first] == [0] * first and min(counts[first:]) > 0  # the prefix was skipped
            assert np.array_equal(reused["y"].to_numpy(), full["y"].to_numpy()), (architecture, first)
            assert reused["row_id"].tolist() == full["row_id"].tolist()
            ys[label] = reused.groupby("coeff")["y"].apply(np.asarray)
        y0 = base["y"].to_numpy()
        assert all(np.array_equal(y, y0) for y in ys["zero"])  # zero reproduces the base exactly
        assert not any(np.array_equal(y, y0) for y in ys["delta"])  # and the delta steers
    assert all("forward" not in layer.__dict__ for layer in decoder_layers(model))  # restored


def test_a_batch_without_a_record_runs_the_full_forward(tok, model):
    record = prefix.PrefixRecord(frozenset({2}))
    with prefix.recording(model, record):
        _evaluate(model, tok, None, EVAL, [0.0], None, _config())
    other = AblationConfig(evals=(EVAL,), max_batch=3, eval_options={EVAL: {"n_rows": 4}})
    delta = _delta(model, range(2, 4))
    full = _evaluate(model, tok, delta, EVAL, [2.0], None, other)
    counts, handles = _count_layer_calls(model)
    try:
        with prefix.reusing(model, record, 2):
            reused = _evaluate(model, tok, delta, EVAL, [2.0], None, other)
    finally:
        for h in handles:
            h.remove()
    assert counts[0] > 0  # no batch matched: nothing skipped
    assert np.array_equal(reused["y"].to_numpy(), full["y"].to_numpy())


def test_a_record_over_its_cap_keeps_nothing(tok, model):
    record = prefix.PrefixRecord(frozenset({1, 2, 3}), max_bytes=1000)
    with prefix.recording(model, record):
        _evaluate(model, tok, None, EVAL, [0.0], None, _config())
    assert record.overflow and not record.usable and not record.calls


def _adapter(model, label: str, layers: range, seed: int) -> Adapter:
    return Adapter(label, _delta(model, layers, seed), "lora", seed, "tiny", "tiny", 2.0)


@pytest.mark.parametrize("cap", [prefix.DEFAULT_MAX_BYTES, 1000])
def test_ablations_with_prefix_reuse_equal_those_without(tok, model, cap):
    adapters = [_adapter(model, "a", range(1, 4), 0), _adapter(model, "b", range(2, 4), 1)]
    families = ("layer", "cross")
    run = {
        reuse: run_ablations(
            model, tok, adapters, _config(families=families, reuse_prefix=reuse, prefix_max_bytes=cap)
        ).drop(columns=["seconds"])
        for reuse in (True, False)
    }
    assert len(run[True]) > 20
    pd.testing.assert_frame_equal(run[True], run[False], check_exact=True)


def test_a_stored_base_is_recorded_again_and_reuse_stays_exact(tok, model, tmp_path):
    from steerlab.bench.store import UnitStore

    adapters = [_adapter(model, "a", range(1, 4), 0)]
    store = UnitStore(tmp_path / "units")
    run_ablations(model, tok, adapters, _config(families=("layer",)), store=store)  # the base is now stored
    counts, handles = _count_layer_calls(model)
    try:
        resumed = run_ablations(model, tok, adapters, _config(families=("layer", "cross")), store=store)
    finally:
        for h in handles:
            h.remove()
    fresh = run_ablations(model, tok, adapters, _config(families=("layer", "cross"), reuse_prefix=False))
    cols = ["variant", "coeff", "effect", "retention", "n_rows"]
    pd.testing.assert_frame_equal(resumed[cols], fresh[cols], check_exact=True)
    assert counts[0] < counts[1]  # the new cross variants (from layer 1) skipped layer 0


def test_the_bench_section_checks_reuse_prefix():
    from steerlab.analysis.bench import AblateSection

    AblateSection(reuse_prefix=False).check()
    with pytest.raises(ValueError, match="reuse_prefix must be true or false"):
        AblateSection(reuse_prefix="no").check()  # type: ignore[arg-type]
