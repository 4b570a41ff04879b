"""Turn a numbered plain-text or markdown procedure into runbook steps."""
from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidInput

__all__ = ["parse_procedure"]

# A markdown heading line; its closing #s and spaces are stripped after the match (``_heading``): a pattern that also
# matched them would try every split of a long run of spaces between the text and the end, a cubic search.
_HEADING = re.compile(r"\s{0,3}#{1,6}\s+(.*)")
_NUMBERED = re.compile(r"(?:(?<=\s)|^)(\d{1,3})[.)]\s+")
_LINE_NUMBERED = re.compile(r"^[ \t]*(\d{1,3})[.)][ \t]+", re.M)
_BULLET = re.compile(r"^\s{0,3}[-*+]\s+(?:\[[ xX]\]\s+)?(.+)$")
# Longest step title kept; longer first lines move into the description.
MAX_TITLE = 200


def _counting_markers(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    cuts: list[tuple[int, int]] = []
    expected = 1
    for match in pattern.finditer(text):
        if int(match.group(1)) == expected:
            cuts.append((match.start(), match.end()))
            expected += 1
    return cuts


def _numbered_items(text: str) -> tuple[str, list[str]]:
    """Split at "1. … 2. … 3. …" markers whose numbers count up from 1, on one line or many.

    A list written one item a line is split at line starts only, so a step
    that mentions "node 2. …" inside its text is not cut in two.
    """
    cuts = _counting_markers(_LINE_NUMBERED, text)
    if len(cuts) < 2:
        cuts = _counting_markers(_NUMBERED, text)
    if not cuts:
        return text, []
    preamble = text[: cuts[0][0]]
    items = []
    for index, (_, body_start) in enumerate(cuts):
        end = cuts[index + 1][0] if index + 1 < len(cuts) else len(text)
        items.append(text[body_start:end])
    return preamble, items


def _bullet_items(text: str) -> tuple[str, list[str]]:
    preamble: list[str] = []
    items: list[str] = []
    for line in text.splitlines():
        match = _BULLET.match(line)
        if match:
            items.append(match.group(1))
        elif items and line.strip():
            items[-1] += "\n" + line.strip()
        elif not items:
            preamble.append(line)
    return "\n".join(preamble), items


def _heading(line: str) -> str | None:
    """The text of a markdown heading line (``## Restart the API ##`` → ``Restart the API``), or None."""
    match = _HEADING.fullmatch(line)
    return (match.group(1).rstrip().rstrip("#").strip() or None) if match else None


def _to_step(item: str) -> dict[str, Any]:
    lines = [line.strip() for line in item.strip().splitlines() if line.strip()]
    first = re.sub(r"\s+", " ", lines[0]) if lines else ""
    title = first.rstrip(".").strip()
    description = "\n".join(lines[1:])
    if len(title) > MAX_TITLE:
        description = "\n".join([first, *lines[1:]])
        title = title[: MAX_TITLE - 1].rstrip() + "…"
    return {"title": title, "description": description}


def parse_procedure(text: str) -> dict[str, Any]:
    """Return ``{"title", "description", "steps"}`` parsed from text; refuse text with no steps."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text is empty; give numbered steps such as '1. Page the on-call engineer'",
                           errors=[{"field": "text", "message": "empty", "value": text}])
    preamble, items = _numbered_items(text)
    if not items:
        preamble, items = _bullet_items(text)
    steps = [s for s in (_to_step(i) for i in items) if s["title"]]
    if not steps:
        raise InvalidInput(
            "found no steps; number them ('1. …', '2. …') or list them as markdown bullets",
            errors=[{"field": "text", "message": "no steps found", "value": text[:200]}],
        )
    title = None
    rest: list[str] = []
    for line in preamble.splitlines():
        heading = _heading(line)
        if heading and title is None:
            title = heading
        elif line.strip():
            rest.append(line.strip())
    description = "\n".join(rest).strip()
    named = re.search(r"\b(?:called|named)\s+[`'\"]?([a-z0-9][a-z0-9-]{1,118}[a-z0-9])", description)
    if title is None and named:
        title = named.group(1)
    return {"title": title, "description": description, "steps": steps}
