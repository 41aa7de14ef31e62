"""Tiny, hermetic models and tokenizers for tests (no download): built from a config in milliseconds."""

from __future__ import annotations

import functools
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


TINY_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mistral", "phi3", "gpt2", "gpt_neox")


def tiny_config(architecture: str = "llama", vocab_size: int = 400, layers: int = 4, hidden: int = 64) -> Any:
    """A small config of the given model_type (hidden 64, 4 layers, 4 heads) for hermetic tests."""
    from transformers import AutoConfig

    common: dict[str, Any] = {"vocab_size": vocab_size, "tie_word_embeddings": False}
    common |= {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if architecture == "gpt2":
        specific = {"n_embd": hidden, "n_layer": layers, "n_head": 4, "n_positions": 256}
    elif architecture == "gpt_neox":
        specific = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4}
        specific |= {"intermediate_size": hidden * 2, "max_position_embeddings": 256}
    else:
        specific = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4}
        specific |= {"num_key_value_heads": 2, "intermediate_size": hidden * 2, "max_position_embeddings": 256}
        if architecture.startswith("gemma") or architecture == "qwen3":
            specific["head_dim"] = hidden // 4
        if architecture in ("gemma2", "gemma3_text"):
            specific |= {"sliding_window": 64, "query_pre_attn_scalar": hidden // 4}
    config = AutoConfig.for_model(architecture, **common, **specific)
    return config


def tiny_model(architecture: str = "llama", seed: int = 0, vocab_size: int = 400, **kwargs: Any) -> nn.Module:
    """A randomly initialised causal LM of the given architecture, float32, eval mode, grads off."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, vocab_size=vocab_size, **kwargs))
    model.eval().requires_grad_(False)
    return model
