"""Tiny, hermetic models and tokenizers for tests (no download): built from a config in milliseconds."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "Yes No yes no YES NO A B a b true false True False 1 0 2 3 4 5 6 7 8 9 "
    "My choice: Action Should you take this action? The answer is is_wrong is_acceptable "
    "honest dishonest person Pretend you're an assistant user system the a of to and in "
    "I think we should always tell the truth because lying hurts people and trust matters. "
    "What is the capital of France? Paris is the capital. How do I bake bread? Mix flour water yeast. "
    "Choices: (A) I consent (B) I do not consent. Would you agree to be shut down? "
    "It is wrong to steal. It is acceptable to help a friend. Sure! Here is an idea for you."
)


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer(chat_template: str | None = CHATML_TEMPLATE) -> Any:
    """A byte-level BPE tokenizer (~400 tokens) trained on a fixed corpus; deterministic."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from steerlab.models import prepare_tokenizer

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = chat_template
    tokenizer.name_or_path = "steerlab-tiny"
    return prepare_tokenizer(tokenizer)


TINY_ARCHITECTURES = (
    "llama",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "mistral",
    "phi3",
    "gpt2",
    "gpt_neox",
)


def tiny_config(architecture: str = "llama", vocab_size: int = 400, layers: int = 4, hidden: int = 64) -> Any:
    """A small config of the given model_type (hidden 64, 4 layers, 4 heads) for hermetic tests.

    Special token ids are set explicitly below `vocab_size`: some configs (phi3: pad 32000) default to
    ids of the full-size vocabulary, which a tiny embedding table cannot hold.
    """
    from transformers import AutoConfig

    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"no tiny config for architecture {architecture!r}; known: {TINY_ARCHITECTURES}")
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be at least 3 (pad, bos, eos), got {vocab_size}")
    common: dict[str, Any] = {"vocab_size": vocab_size, "tie_word_embeddings": False}
    common |= {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if architecture == "gpt2":
        specific = {"n_embd": hidden, "n_layer": layers, "n_head": 4, "n_positions": 1024}
    elif architecture == "gpt_neox":
        specific = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4}
        specific |= {"intermediate_size": hidden * 2, "max_position_embeddings": 1024}
    else:
        specific = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4}
        specific |= {
            "num_key_value_heads": 2,
            "intermediate_size": hidden * 2,
            "max_position_embeddings": 1024,
        }
        if architecture.startswith("gemma") or architecture == "qwen3":
            specific["head_dim"] = hidden // 4
        if architecture in ("gemma2", "gemma3_text"):
            specific |= {"sliding_window": 64, "query_pre_attn_scalar": hidden // 4}
    config = AutoConfig.for_model(architecture, **common, **specific)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value >= vocab_size:
            setattr(config, key, common[key])
    return config


def tiny_model(architecture: str = "llama", seed: int = 0, vocab_size: int = 400, **kwargs: Any) -> nn.Module:
    """A randomly initialised causal LM of the given architecture, float32, eval mode, grads off."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, vocab_size=vocab_size, **kwargs))
    model.eval().requires_grad_(False)
    return model


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run torch ops on `count` threads inside the block, then restore the previous setting.

    Tiny test models are fastest on one thread, and on a machine shared with other busy processes
    two OpenMP threads can stall each other at every op (measured: 60x slower under load 12).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_GGUF_LLAMA_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_BLOCK_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _llama_cpp_permute(weights: Any, heads: int) -> Any:
    """llama.cpp's reordering of q/k rows (its converter does this; transformers undoes it on load)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_gguf(path: Any, model: nn.Module, tokenizer: Any) -> Any:
    """Write a tiny llama and its byte-level BPE tokenizer as an float32 GGUF file, as llama.cpp would.

    Lets tests load a real GGUF (the format the built-in model ships in) with no download.
    """
    import json
    from pathlib import Path

    import gguf

    config: Any = model.config  # a transformers config (nn.Module.__getattr__ types it Tensor | Module)
    if config.model_type != "llama":
        raise ValueError(f"write_tiny_gguf writes llama models only, got {config.model_type!r}")
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("steerlab-tiny")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(
        float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"])
    )
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(state["vocab"].items(), key=lambda item: item[1])]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in state["merges"]]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in special else 1 for token in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    for name, tensor in model.state_dict().items():
        if name in _GGUF_LLAMA_NAMES:
            gguf_name = _GGUF_LLAMA_NAMES[name]
        else:
            _, _, layer, rest = name.split(".", 3)
            module, leaf = rest.rsplit(".", 1)
            gguf_name = f"blk.{layer}.{_GGUF_BLOCK_NAMES[module]}.{leaf}"
        array = tensor.detach().float().numpy()
        if gguf_name.endswith("attn_q.weight"):
            array = _llama_cpp_permute(array, config.num_attention_heads)
        elif gguf_name.endswith("attn_k.weight"):
            array = _llama_cpp_permute(array, config.num_key_value_heads)
        writer.add_tensor(gguf_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ---------------------------------------------------------------------------------------------- fast options, placements

FAST_WEIGHT_STEERING: dict[str, Any] = {
    "n_questions": 5,
    "max_new_tokens": 6,
    "filter_responses": False,  # random tiny models write junk
    "epochs": 1,
    "batch_size": 4,
    "val_fraction": 0.25,
    "learning_rate": 1e-2,
    "progress": False,
}
"""Weight-steering options that train a tiny random model's adapters in about a second (one one-step epoch)."""


def split_device_map(n_layers: int, first: int | str, second: int | str) -> dict[str, int | str]:
    """An accelerate device map of a Llama-style model: embeddings and the lower half of the blocks on
    `first`, the upper half, the final norm and the head on `second` (a GPU, "cpu" or "disk")."""
    device_map: dict[str, int | str] = {"model.embed_tokens": first, "model.rotary_emb": first}
    device_map |= {"model.norm": second, "lm_head": second}
    device_map |= {f"model.layers.{i}": first if i < n_layers // 2 else second for i in range(n_layers)}
    return device_map


# ---------------------------------------------------------------------------------------------- bench configs

TINY_CALIBRATION_TOML = """[calibration]
target_kl = 0.01
tol = 0.002
n_prompts = 2
n_tokens = 4
"""
"""A calibration table that converges in a few KL evaluations on the tiny model (a tiny target KL)."""


def _toml_list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{name}"' for name in names) + "]"


def tiny_bench_toml(
    evals: tuple[str, ...] = ("sycophancy-claims",),
    methods: tuple[str, ...] = ("prompt-simple", "mean_diff", "random"),
    *,
    n_boot: int = 200,
    model: str = "tiny",
    extra: str = "",
) -> str:
    """A small bench config for the tiny model: `methods` (mean_diff and random on 4 pairs, a two-vector
    random band when random is one of them) on `evals`, converging calibration, then `extra` tables."""
    text = (
        f'\nmodel = "{model}"\nbehavior = "honesty"\nmethods = {_toml_list(methods)}\n'
        f"evals = {_toml_list(evals)}\nn_boot = {n_boot}\n" + TINY_CALIBRATION_TOML
    )
    if "random" in methods:
        text += "[null]\nn_vectors = 2\n"
    if "mean_diff" in methods:
        text += "[method_options.mean_diff]\nn_pairs = 4\n"
    if "random" in methods:
        text += "[method_options.random]\nn_pairs = 4\nn_vectors = 2\n"
    return text + extra


TINY_BENCH_TOML = tiny_bench_toml()
"""A small bench config for the tiny model: a prompt method, mean_diff and a two-vector random band, on
sycophancy-claims (11 units)."""
