"""Chat formatting: the model's own template, an optional system prompt and an assistant prefill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLAIN_FORMAT = "{system}User: {user}\nAssistant:{prefill}"
"""Format for tokenizers with no chat template, e.g. ``System: Be brief.\\n\\nUser: Hi?\\nAssistant: My choice:``
(the ``System:`` paragraph only when a system prompt is given, `` PREFILL`` only when a prefill is)."""


@dataclass(frozen=True)
class ChatPrompt:
    """One prompt before formatting: user message, optional system prompt, optional assistant prefill."""

    user: str
    system: str | None = None
    prefill: str = ""


_SYSTEM_PROBE = "steerlab-system-probe-7f3a"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _template_rejects_system(tokenizer: Any) -> bool:
    template = tokenizer.chat_template
    cached = getattr(tokenizer, "_steerlab_rejects_system", None)
    if isinstance(cached, tuple) and cached[0] == template:  # cached per template text
        return bool(cached[1])
    messages = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hello"}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rejects = _SYSTEM_PROBE not in rendered  # some templates drop the system message silently
    except Exception:  # jinja raises TemplateError("System role not supported") for Gemma-style templates
        rejects = True
    tokenizer._steerlab_rejects_system = (template, rejects)
    return rejects


def format_chat(tokenizer: Any, user: str, system: str | None = None, prefill: str = "") -> str:
    """Render one turn as text ending where the assistant's reply (after `prefill`) begins.

    Templates that reject (raise on) or silently drop a system role get the system prompt prepended to
    the user message, separated by a blank line. Tokenizers without a template use :data:`PLAIN_FORMAT`,
    where a prefill follows ``Assistant:`` after one space; with a template it follows the template's
    generation prompt directly.
    """
    if not has_chat_template(tokenizer):
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
    """:func:`format_chat` for each prompt, in order."""
    return [format_chat(tokenizer, p.user, p.system, p.prefill) for p in prompts]
