r"""Prompt templates as data, and how a problem is rendered with one.

A :class:`PromptTemplate` holds an optional system text, a user format string with a single ``{problem}``
field, and whether the tokenizer's chat template is to be used. :func:`render_prompt` turns a problem into
what TRL's ``GRPOTrainer`` takes as a prompt:

* chat template wanted and the tokenizer has one: TRL's conversational format,
  ``[{"role": "system", "content": system}, {"role": "user", "content": user}]`` (no system message when
  ``system`` is ``None``); TRL applies the chat template and the generation prompt itself.
* otherwise a plain string: ``system + "\n\n" + user`` (or just ``user``), which TRL tokenizes as is.

Registered templates (:data:`TEMPLATES`):

``qwen_math``
    The Qwen2.5-Math evaluation harness's ``qwen25-math-cot`` prompt: system text exactly
    ``Please reason step by step, and put your final answer within \boxed{}.``, the problem as the user turn.
``r1``
    DeepSeek-R1-Zero's instruction (DeepSeek-AI 2025, Table 1) with one change: the final answer goes in
    ``\boxed{}`` instead of ``<answer></answer>`` tags, so that the one scorer
    (:mod:`lgrpo_bench.tasks.scoring`) grades it; the reasoning goes in ``<think></think>``. Sent as the
    system text of a chat, the problem as the user turn.
``arith``
    The synthetic task's raw prompt ``<|user|>{problem}<|assistant|>`` (no chat template, no system text;
    the same string as :data:`lgrpo_bench.tasks.arith.ARITH_PROMPT_FORMAT`); the arith and lenmix tasks use it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["PromptTemplate", "TEMPLATES", "get_template", "render_prompt"]


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt template.

    Attributes:
        name: registry key, logged with results.
        system: system text, or ``None`` for no system turn.
        user_format: the user turn, a ``str.format`` string whose only field is ``{problem}`` (literal braces
            doubled: ``{{`` / ``}}``).
        use_chat_template: render through the tokenizer's chat template when it has one.
    """

    name: str
    system: str | None
    user_format: str
    use_chat_template: bool

    def __post_init__(self) -> None:
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(self.user_format) if field is not None}
        except ValueError as error:
            raise ValueError(
                f"template {self.name!r}: user_format is not a valid format string ({error}); "
                "double literal braces as {{ and }}"
            ) from error
        if fields != {"problem"}:
            raise ValueError(
                f"template {self.name!r}: user_format must contain exactly the field {{problem}}, "
                f"found {sorted(fields)}"
            )

    def user_text(self, problem: str) -> str:
        """The user turn for ``problem``."""
        return self.user_format.format(problem=problem)


_QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

_R1_SYSTEM = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the "
    "answer. The reasoning process is enclosed within <think> </think> tags, and the final answer is given "
    "after it within \\boxed{}, i.e., <think> reasoning process here </think> answer here, "
    "with the final answer in \\boxed{}."
)

TEMPLATES: Mapping[str, PromptTemplate] = MappingProxyType(
    {
        "qwen_math": PromptTemplate(
            name="qwen_math", system=_QWEN_MATH_SYSTEM, user_format="{problem}", use_chat_template=True
        ),
        "r1": PromptTemplate(name="r1", system=_R1_SYSTEM, user_format="{problem}", use_chat_template=True),
        "arith": PromptTemplate(
            name="arith", system=None, user_format="<|user|>{problem}<|assistant|>", use_chat_template=False
        ),
    }
)
"""Registered templates by name (read-only)."""


def get_template(template: str | PromptTemplate) -> PromptTemplate:
    """The template registered under ``template`` (or ``template`` itself if it already is one).

    Raises ``ValueError`` naming the unknown name and listing the registered ones.
    """
    if isinstance(template, PromptTemplate):
        return template
    try:
        return TEMPLATES[template]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown prompt template {template!r}; choose one of {', '.join(sorted(TEMPLATES))} "
            "(or pass a PromptTemplate)"
        ) from None


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    template: str | PromptTemplate, problem: str, tokenizer: Any = None
) -> str | list[dict[str, str]]:
    r"""Render ``problem`` with ``template`` (a registered name or a :class:`PromptTemplate`).

    Returns TRL's conversational prompt (a list of ``{"role", "content"}`` messages) when the template uses
    the chat template and ``tokenizer`` has a non-empty ``chat_template``; otherwise the plain string
    ``system + "\n\n" + user`` (just ``user`` without system text). Raises ``ValueError`` for an unknown
    template name.
    """
    resolved = get_template(template)
    user = resolved.user_text(problem)
    if resolved.use_chat_template and _has_chat_template(tokenizer):
        messages = []
        if resolved.system is not None:
            messages.append({"role": "system", "content": resolved.system})
        messages.append({"role": "user", "content": user})
        return messages
    if resolved.system is None:
        return user
    return f"{resolved.system}\n\n{user}"
