"""Chat formatting: the model's template, templates that reject a system role, no template, prefill."""

from __future__ import annotations

import pytest

from steerlab.chat import PLAIN_FORMAT, ChatPrompt, format_chat, format_prompts
from steerlab.testing import tiny_tokenizer

# Gemma's template raises on a system message; this one does the same, in the same way.
GEMMA_STYLE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# A template that renders only user and assistant turns and silently drops anything else.
DROPS_SYSTEM = (
    "{% for message in messages %}{% if message['role'] in ['user', 'assistant'] %}"
    "[{{ message['role'] }}] {{ message['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def test_template_with_system_and_prefill(tok):
    text = format_chat(tok, "Is it?", system="Be brief.", prefill="My choice:")
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nIs it?<|im_end|>\n"
        "<|im_start|>assistant\nMy choice:"
    )
    assert format_chat(tok, "Is it?") == "<|im_start|>user\nIs it?<|im_end|>\n<|im_start|>assistant\n"


def test_template_that_rejects_system_gets_it_in_the_user_turn():
    tok = tiny_tokenizer(chat_template=GEMMA_STYLE)
    with pytest.raises(Exception, match="System role not supported"):
        tok.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)
    text = format_chat(tok, "Is it?", system="Be brief.", prefill="My choice:")
    assert (
        text
        == "<|im_start|><start_of_turn>user\nBe brief.\n\nIs it?<end_of_turn>\n<start_of_turn>model\nMy choice:"
    )
    assert (
        format_chat(tok, "Is it?")
        == "<|im_start|><start_of_turn>user\nIs it?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_template_that_drops_system_silently_gets_it_in_the_user_turn():
    tok = tiny_tokenizer(chat_template=DROPS_SYSTEM)
    assert format_chat(tok, "Q?", system="Be brief.") == "[user] Be brief.\n\nQ?\n[assistant] "


def test_rejection_is_rechecked_when_the_template_changes():
    tok = tiny_tokenizer(chat_template=GEMMA_STYLE)
    assert "Be brief.\n\nQ?" in format_chat(tok, "Q?", system="Be brief.")
    tok.chat_template = tiny_tokenizer().chat_template
    assert format_chat(tok, "Q?", system="Be brief.").startswith("<|im_start|>system\nBe brief.<|im_end|>")


@pytest.mark.parametrize("template", [None, ""])
def test_no_template_uses_the_plain_documented_format(template):
    tok = tiny_tokenizer(chat_template=template)
    assert format_chat(tok, "Is it?") == "User: Is it?\nAssistant:"
    assert format_chat(tok, "Is it?", system="Be brief.", prefill="My choice:") == (
        "System: Be brief.\n\nUser: Is it?\nAssistant: My choice:"
    )
    assert PLAIN_FORMAT.format(system="", user="Is it?", prefill="") == "User: Is it?\nAssistant:"


def test_format_prompts_keeps_order(tok):
    prompts = [ChatPrompt("one"), ChatPrompt("two", system="S"), ChatPrompt("three", prefill="P")]
    assert format_prompts(tok, prompts) == [format_chat(tok, p.user, p.system, p.prefill) for p in prompts]
