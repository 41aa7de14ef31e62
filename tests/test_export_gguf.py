"""llama.cpp control-vector GGUF export: round trip through gguf and repeng, and clear refusals."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from steerlab.exporters.gguf import export_cli, export_gguf, model_hint, read_gguf
from steerlab.interventions import ActivationAddition, InterventionError, PromptIntervention
from steerlab.interventions.activation_variants import DirectionalAblation
from steerlab.interventions.vector_bank import VectorBank


def import_repeng():
    """repeng 0.4.0 names ``np.float_`` in type hints only, which numpy 2 removed; alias it, then import."""
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    try:
        import repeng
    except Exception as error:  # noqa: BLE001 - any import failure means the peer is unusable here
        pytest.skip(
            f"repeng is not importable ({type(error).__name__}: {error}); run scripts/setup.sh --peers"
        )
    return repeng


def addition() -> ActivationAddition:
    generator = torch.Generator().manual_seed(0)
    vectors = {layer: torch.randn(64, generator=generator) for layer in (3, 5, 7)}
    return ActivationAddition(vectors, meta={"method": "mean_diff", "model_type": "llama"})


def test_round_trip_through_repeng(tmp_path):
    repeng = import_repeng()
    iv = addition()
    path = export_gguf(iv, tmp_path / "cv.gguf", coeff=1.5)
    vector = repeng.ControlVector.import_gguf(str(path))
    assert vector.model_type == "llama"
    assert sorted(vector.directions) == [3, 5, 7]
    for layer, values in vector.directions.items():
        np.testing.assert_allclose(values, 1.5 * iv.vectors[layer].numpy(), rtol=1e-6, atol=1e-6)


def test_layout_read_with_gguf(tmp_path):
    import gguf

    path = export_gguf(addition(), tmp_path / "cv.gguf")
    reader = gguf.GGUFReader(str(path))
    arch = reader.get_field("general.architecture")
    assert bytes(arch.parts[-1]).decode() == "controlvector"
    assert int(reader.get_field("controlvector.layer_count").parts[-1][0]) == 3
    assert sorted(t.name for t in reader.tensors) == ["direction.3", "direction.5", "direction.7"]
    hint, vectors = read_gguf(path)
    assert hint == "llama" and vectors[5].dtype == np.float32
    np.testing.assert_array_equal(vectors[5], addition().vectors[5].numpy())


def test_vector_bank_exports_its_selected_vector(tmp_path):
    bank = VectorBank({4: torch.arange(12.0).reshape(3, 4)}, index=0).select(2)
    _, vectors = read_gguf(export_gguf(bank, tmp_path / "bank.gguf"))
    np.testing.assert_array_equal(vectors[4], np.array([8.0, 9.0, 10.0, 11.0], dtype=np.float32))


def test_refuses_what_a_control_vector_cannot_express(tmp_path):
    with pytest.raises(InterventionError, match="cannot export a 'directional_ablation' intervention"):
        export_gguf(DirectionalAblation({3: torch.ones(4)}), tmp_path / "x.gguf")
    with pytest.raises(InterventionError, match="only plain activation additions"):
        export_gguf(PromptIntervention("a", "b"), tmp_path / "x.gguf")
    with pytest.raises(InterventionError, match="layer 0"):
        export_gguf(ActivationAddition({0: torch.ones(4)}), tmp_path / "x.gguf")
    with pytest.raises(InterventionError, match="positions='generated'"):
        export_gguf(ActivationAddition({2: torch.ones(4)}, positions="generated"), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_model_hint_from_meta():
    assert model_hint(ActivationAddition({1: torch.ones(2)}, meta={"model_type": "qwen2"})) == "qwen2"
    assert (
        model_hint(
            ActivationAddition({1: torch.ones(2)}, meta={"model": {"architecture": "LlamaForCausalLM"}})
        )
        == "llama"
    )


def test_cli_export(tmp_path, capsys):
    from steerlab.cli import main

    source = addition().save(tmp_path / "iv")
    out = tmp_path / "out" / "cv.gguf"
    assert main(["export", "-i", str(source), "--format", "gguf", "-o", str(out), "--coeff", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    _, vectors = read_gguf(out)
    np.testing.assert_allclose(vectors[7], 2 * addition().vectors[7].numpy(), rtol=1e-6)
    args = argparse.Namespace(output=str(tmp_path / "direct.gguf"), coeff=1.0)
    export_cli(addition(), args)
    assert (tmp_path / "direct.gguf").is_file()
