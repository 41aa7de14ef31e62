"""Chat formatting: the model's own template, an optional system prompt and an assistant prefill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLAIN_FORMAT = "{system}User: {user}\nAssistant:{prefill}"
"""Format used for tokenizers with no chat template: ``System: ...\\n\\n`` (if any), ``User: ...``, ``Assistant:``."""


@dataclass(frozen=True)
class ChatPrompt:
    """One prompt before formatting: user message, optional system prompt, optional assistant prefill."""

    user: str
    system: str | None = None
    prefill: str = ""


def _template_rejects_system(tokenizer: Any) -> bool:
    cached = getattr(tokenizer, "_steerlab_rejects_system", None)
    if cached is not None:
        return bool(cached)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rejects = "S" not in rendered.replace("U", "")
    except Exception:  # jinja raises TemplateError("System role not supported") for Gemma-style templates
        rejects = True
    tokenizer._steerlab_rejects_system = rejects
    return rejects


def format_chat(tokenizer: Any, user: str, system: str | None = None, prefill: str = "") -> str:
    """Render one turn as text ending where the assistant's reply (after `prefill`) begins.

    Templates that reject a system role get the system prompt prepended to the user message.
    Tokenizers without a template use :data:`PLAIN_FORMAT`.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        head = f"System: {system}\n\n" if system else ""
        return PLAIN_FORMAT.format(system=head, user=user, prefill=f" {prefill}" if prefill else "")
    messages = []
    if system:
        if _template_rejects_system(tokenizer):
            user = f"{system}\n\n{user}"
        else:
            messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return rendered + prefill


def format_prompts(tokenizer: Any, prompts: list[ChatPrompt]) -> list[str]:
    return [format_chat(tokenizer, p.user, p.system, p.prefill) for p in prompts]
