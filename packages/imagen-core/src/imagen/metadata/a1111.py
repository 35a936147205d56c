"""The AUTOMATIC1111 "parameters" text that image galleries and Civitai read.

Its shape::

    a cat in space, cinematic
    Negative prompt: blurry
    Steps: 20, Seed: 42, Size: 512x512, Model: sdxl, Imagen backend: local

The last line holds ``Key: value`` pairs; a value with a comma, colon or newline is
written as a JSON string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["format_parameters", "parse_parameters"]

_NEGATIVE = "Negative prompt:"
_PAIR = re.compile(r'\s*(\w[\w \-/]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _quote(value: Any) -> str:
    text = str(value)
    if any(c in text for c in ',:\n"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_parameters(prompt: str, negative_prompt: str, fields: Mapping[str, Any]) -> str:
    """The A1111 text for a prompt, negative prompt and ``Key: value`` fields (None skipped)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{_NEGATIVE} {negative_prompt}")
    pairs = [f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def _pairs(line: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        if match is None or match.end() == position:
            return None
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = value.strip('"')
        found[key] = value
        position = match.end()
    return found


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Split A1111 text into (prompt, negative prompt, fields).

    The last line counts as fields only when it parses as ``Key: value`` pairs and has a
    ``Steps`` or ``Seed`` key; otherwise the whole text is the prompt.
    """
    lines = text.strip().split("\n")
    fields = _pairs(lines[-1]) if len(lines) > 1 or ":" in lines[-1] else None
    if fields is not None and ("Steps" in fields or "Seed" in fields):
        lines = lines[:-1]
    else:
        fields = {}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith(_NEGATIVE):
            target = negative_lines
            line = line[len(_NEGATIVE) :].strip()
        target.append(line)
    return "\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), fields
