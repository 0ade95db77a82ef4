"""Prompts as people write them: the conversational format (a list of {role, content} messages), a system prompt and
a prompt template (config `data.system_prompt`, `data.template`).

The policy renders one prompt string with the model's own chat template (policy/hf.py wraps it as the user turn), so
a conversation here becomes that one string: a lone user turn is its content; a system prompt goes first, separated
by a blank line; several turns are written out as 'User: ...' / 'Assistant: ...' paragraphs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

ROLES = ("system", "user", "assistant")


def is_messages(value) -> bool:
    """True for a non-empty list of dicts, each with a 'role': the conversational format."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def check_messages(messages, field: str = "messages") -> list[dict]:
    """The messages, checked: a list of {role: system|user|assistant, content: str}; a TypeError / ValueError
    naming the field and the message index otherwise (the data loaders add file and line)."""
    if not isinstance(messages, list) or not messages:
        raise TypeError(f"{field!r} must be a non-empty list of {{role, content}} messages, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise TypeError(f"{field}[{i}] must be an object with 'role' and 'content', got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise ValueError(f"{field}[{i}].role={m.get('role')!r} must be one of {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise TypeError(f"{field}[{i}].content must be a string, got {type(m.get('content')).__name__}")
    return messages


def render_messages(messages: list[dict], field: str = "messages") -> str:
    """One prompt string from a conversation (see the module docstring)."""
    messages = check_messages(messages, field)
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        body = turns[0]["content"]
    else:
        body = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)
    return "\n\n".join([*system, body]) if body else "\n\n".join(system)


def split_conversation(messages: list[dict], field: str = "messages") -> tuple[str, str]:
    """(prompt, completion) of an SFT conversation: the last message is the assistant's completion, everything
    before it is the prompt."""
    messages = check_messages(messages, field)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise ValueError(f"{field!r} must end with an assistant message (the completion) after at least one other message")
    return render_messages(messages[:-1], field), messages[-1]["content"]


@dataclass(frozen=True)
class PromptFormat:
    """config `data.template` (a string with '{prompt}') and `data.system_prompt`, applied to every problem's prompt."""

    template: str | None = None  # e.g. "Question: {prompt}\nThink step by step; end with 'Answer: N'."
    system_prompt: str | None = None  # put before the (templated) prompt, a blank line between

    def __post_init__(self):
        if self.template is not None and "{prompt}" not in self.template:
            raise ValueError(f"data.template={self.template!r} must contain '{{prompt}}' where the question goes")

    @property
    def active(self) -> bool:
        return bool(self.template or self.system_prompt)

    def apply(self, prompt: str) -> str:
        # str.replace, not str.format: templates may hold braces of their own (LaTeX, JSON examples)
        text = self.template.replace("{prompt}", prompt) if self.template else prompt
        return f"{self.system_prompt}\n\n{text}" if self.system_prompt else text


class FormattedSource:
    """A problem source whose training and eval prompts go through a PromptFormat; answers and ids unchanged."""

    def __init__(self, source, fmt: PromptFormat):
        self.source, self.fmt = source, fmt
        self.eval_problems = [replace(p, prompt=fmt.apply(p.prompt)) for p in source.eval_problems]

    def train_problems(self, indices) -> list:
        return [replace(p, prompt=self.fmt.apply(p.prompt)) for p in self.source.train_problems(indices)]
