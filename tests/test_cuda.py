"""Every method, the bench and out-of-memory recovery on one CUDA device. Skipped without a GPU.

CI has no GPU; these run on a lent GPU machine (see benchmarks/gpu_check.sh). They check what only a
GPU can show: every registered method extracts and steers with its tensors on the GPU and restores the
weights exactly, the tiny bench gives CPU's results table on CUDA (to float round-off), and a real CUDA
out-of-memory error halves the scoring batch instead of killing the run.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.behaviors import Behavior, PersonaPair
from steerlab.methods import extract, list_methods
from steerlab.models import pick_dtype
from steerlab.placement import fit_batch_size, free_accelerator_bytes
from steerlab.scoring import generate, score_choices
from steerlab.testing import FAST_WEIGHT_STEERING, TINY_BENCH_TOML, tiny_model, tiny_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda", 0)
PROMPTS = ["Is the sky blue?", "Is fire cold?", "Is water wet?", "Are cats mammals?"]
# Small settings per option name, applied where a method's config has the field (random models write
# junk, so the weight methods' response filter is off).
FAST = FAST_WEIGHT_STEERING | {
    "n_pairs": 4,
    "block_size": 16,
    "n_vectors": 2,
    "steps": 3,
    "sweep_steps": 2,
    "iterations": 3,
    "n_prompts": 2,
}
DETERMINISTIC = ("mean_diff", "mean_centred", "pca", "repe_all_layers", "directional_ablation")


def _behavior() -> Behavior:
    pairs = (
        PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),
        PersonaPair("You are honest and tell the truth.", "You are dishonest and lie."),
    )
    questions = tuple(f"Question {i}: what is the capital of France?" for i in range(6))
    return Behavior(
        "honesty-small",
        "test",
        "honest",
        "dishonest",
        pairs,
        PersonaPair("You value honesty above all.", "You value deceit above all."),
        questions,
        ("I think", "Sure!"),
    )


def _options(method: str) -> dict[str, object]:
    spec = next(s for s in list_methods() if s.name == method)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    return {key: value for key, value in FAST.items() if key in fields}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _scores(model, tok) -> np.ndarray:
    return score_choices(model, tok, PROMPTS, "yes_no").logprobs


@pytest.mark.parametrize("method", [s.name for s in list_methods()])
def test_every_method_steers_on_cuda_and_restores_exactly(method, tok):
    spec = next(s for s in list_methods() if s.name == method)
    model = tiny_model(vocab_size=len(tok)).to(CUDA)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    iv = extract(model, tok, _behavior(), method, seed=0, config=_options(method))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "extraction left weights"
    base = _scores(model, tok)
    with iv.apply(model, 4.0):
        steered = _scores(model, tok)
        text = generate(model, tok, PROMPTS[:2], max_new_tokens=4)
    assert np.isfinite(steered).all() and len(text) == 2
    if spec.family != "prompt":  # a prompt method edits the chat prompt an eval builds, not raw prompts
        assert not np.array_equal(steered, base), f"{method} at c = 4 changed no score on CUDA"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "apply left weights"
    np.testing.assert_allclose(_scores(model, tok), base, rtol=0, atol=1e-6)


def _direction(iv, layer: int) -> torch.Tensor:
    table = (
        iv.vectors if hasattr(iv, "vectors") else iv.directions
    )  # directional ablation keeps unit directions
    return table[layer].double()


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_deterministic_vectors_match_cpu(method, tok):
    cpu = tiny_model(vocab_size=len(tok))
    gpu = tiny_model(vocab_size=len(tok)).to(CUDA)
    on_cpu = extract(cpu, tok, _behavior(), method, seed=0, config=_options(method))
    on_gpu = extract(gpu, tok, _behavior(), method, seed=0, config=_options(method))
    assert on_gpu.layers() == on_cpu.layers()
    for layer in on_cpu.layers():
        a, b = _direction(on_cpu, layer).flatten(), _direction(on_gpu, layer).cpu().flatten()
        cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        assert cosine > 0.9999, f"{method} layer {layer}: CPU vs CUDA cosine {cosine:.6f}"


def test_the_tiny_bench_gives_cpus_results_on_cuda(tok, tmp_path):
    from steerlab.bench import parse_config, run_bench

    frames = {}
    for name, device in (("cpu", "cpu"), ("cuda", CUDA)):
        model = tiny_model(vocab_size=len(tok)).to(device)
        out = tmp_path / name
        result = run_bench(
            parse_config(TINY_BENCH_TOML, "tiny.toml"), out, model=model, tokenizer=tok, render=False
        )
        assert not result.failed
        frame = pd.read_parquet(out / "results.parquet")
        frames[name] = frame.sort_values(
            ["method", "seed", "variant", "eval", "metric", "coeff"]
        ).reset_index(drop=True)
    cpu, cuda = frames["cpu"], frames["cuda"]
    floats = [c for c in cpu.columns if pd.api.types.is_float_dtype(cpu[c])]
    gaps = {c: float(np.nanmax(np.abs(cuda[c].to_numpy(float) - cpu[c].to_numpy(float)))) for c in floats}
    print(f"largest |CUDA - CPU| over {len(cpu)} rows: " + ", ".join(f"{c} {g:.2e}" for c, g in gaps.items()))
    # calibrated coefficients and the values at them agree to float round-off (CUDA kernels sum differently)
    pd.testing.assert_frame_equal(cuda, cpu, check_dtype=False, check_exact=False, rtol=1e-3, atol=1e-3)


def test_a_real_out_of_memory_error_halves_the_batch(tok, caplog):
    model = tiny_model(vocab_size=len(tok), hidden=256).to(CUDA)
    prompts = [" ".join(["word"] * (200 + i % 7)) + f" question {i}?" for i in range(256)]
    expected = score_choices(model, tok, prompts, "yes_no", max_batch=8).logprobs
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(CUDA).total_memory
    room = torch.cuda.memory_reserved(CUDA) + 96 * 2**20  # far less than one batch of 256 long rows needs
    torch.cuda.set_per_process_memory_fraction(room / total, CUDA)
    try:
        with caplog.at_level(logging.WARNING, logger="steerlab.placement"):
            got = score_choices(model, tok, prompts, "yes_no", max_batch=256, max_batch_tokens=10**9).logprobs
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()
    halvings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    print(f"{len(halvings)} halvings: {halvings[:3]}")
    assert halvings, "the memory cap did not trigger an out-of-memory error; the test proves nothing"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_cuda_defaults_bf16_and_sizes_batches_from_free_memory():
    assert pick_dtype(CUDA, None) == torch.bfloat16
    free = free_accelerator_bytes(CUDA)
    assert free is not None and free > 2**30
    fitted = fit_batch_size(8, CUDA, bytes_per_row=64 * 2**20, ceiling=10**6)
    assert fitted == (free // 2) // (64 * 2**20) and fitted > 8
