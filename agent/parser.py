"""Parse one ReAct step written by a model: `Thought:` / `Action:` / `Action Input:` / `Final Answer:`.

`parse_step` is a pure function. It is tolerant where small models and chat servers are
sloppy (spacing, case, fences, single quotes, prose after the JSON, a stop string cut
short) and strict where guessing would hide a real mistake (an action and a final answer
together, a missing Action Input, an unknown tool). Every failure is one `ParseError`
carrying a `hint` phrased so the model can act on it in the next step.
"""
from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rankact.agent.errors import RankactError

FORMAT_HINT = (
    "Use the format: 'Thought: <reasoning>' then either 'Action: <tool name>' and "
    "'Action Input: <JSON object>' on their own lines, or 'Final Answer: <answer>'."
)


class ParseError(RankactError, ValueError):
    """The model's text is not a valid step (part of the tree in `rankact.agent.errors`). `hint` tells the model how to fix it."""

    def __init__(self, message: str, hint: str = FORMAT_HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ParsedAction:
    thought: str | None
    action: str
    # A dict for JSON inputs, a str for plain-text input (single-string tools).
    action_input: dict[str, Any] | str
    raw: str = ""


@dataclass(frozen=True)
class ParsedFinal:
    thought: str | None
    answer: str
    raw: str = ""


# A keyword with optional spaces and markdown bold before its colon. Linear on any text:
# the pattern starts at the keyword itself (a leading `\**[ \t]*` made every position of a
# run of stars or spaces rescan the run: 16,000 `*` took seconds), and the quantifiers are
# possessive (their character classes are disjoint, so nothing is lost by never giving back).
# The bold stars and spaces before the keyword are taken by `_keyword_start` instead.
_KEYWORD = re.compile(
    r"\b(?P<kw>final[ \t]+answer|action[ \t]+input|action|thought|observation)[ \t]*+\**+[ \t]*+:[ \t]*+\**+",
    re.IGNORECASE,
)
# A stop sequence cut short by a token limit, e.g. "\nObs" or "\nObservation" at the very end.
_TRUNCATED_STOP = re.compile(r"\n[ \t]*O(?:b(?:s(?:e(?:r(?:v(?:a(?:t(?:i(?:o(?:n)?)?)?)?)?)?)?)?)?)?[ \t]*$")
# possessive info string: an unclosed fence must not retry the body once per shorter info string
_FENCE = re.compile(r"^```[^\n`]*+\n?(?P<body>.*?)\n?```", re.DOTALL)


def _canon(keyword: str) -> str:
    return " ".join(keyword.lower().split())


def _keyword_start(text: str, at: int, floor: int) -> int:
    """Where a keyword found at `at` begins once the `**` and spaces/tabs before it are
    included (bold markup around a keyword is not part of the body before it). Each run is
    walked once: it lies between the previous keyword's end (`floor`) and this one."""
    i = at
    while i > floor and text[i - 1] in " \t":
        i -= 1
    while i > floor and text[i - 1] == "*":
        i -= 1
    return i


def _split_keywords(text: str) -> list[tuple[str, str]]:
    """[(keyword, body)] in order; body runs to the next keyword. Text before the first
    keyword is returned under the key "" (an unlabelled thought)."""
    parts: list[tuple[str, str]] = []
    last_kw, last_end = "", 0
    for match in _KEYWORD.finditer(text):
        start = _keyword_start(text, match.start(), last_end)
        parts.append((last_kw, text[last_end:start]))
        last_kw, last_end = _canon(match.group("kw")), match.end()
    parts.append((last_kw, text[last_end:]))
    return parts


def _clean_tool_name(body: str) -> str:
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    name = lines[0] if lines else ""
    name = name.strip("`*'\" \t")
    # "search (looks things up)" or "search[query]" -> "search"
    cut = next((i for i, ch in enumerate(name) if ch in "(["), None)  # a regex here rescanned runs of spaces
    if cut is not None:
        name = name[:cut].rstrip()
    name = name.strip("`*'\" \t.:")
    return name


def _match_tool(name: str, tool_names: Sequence[str]) -> str | None:
    """The tool named exactly, else the one tool whose name differs only by case; never a guess
    between two (an agent refuses such names, `rankact.tools.names`; this holds without it too)."""
    if name in tool_names:
        return name
    folded = name.casefold()
    matches = [candidate for candidate in tool_names if candidate.casefold() == folded]
    return matches[0] if len(matches) == 1 else None


def _strip_fences(body: str) -> str:
    body = body.strip()
    match = _FENCE.match(body)
    if match:
        return match.group("body").strip()
    if body.startswith("```"):  # an opening fence whose closing fence was cut off
        return body.split("\n", 1)[1].strip() if "\n" in body else ""
    return body


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _balanced_object(text: str) -> str | None:
    """The first {...} with balanced braces, ignoring braces inside quotes."""
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[: i + 1]
    return None


_INPUT_HINT = 'Write the Action Input as a JSON object, e.g. {"name": "value"}, on one line.'


def parse_action_input(body: str) -> dict[str, Any] | str:
    """A JSON object (fences, single quotes and trailing prose tolerated) or plain text."""
    text = _strip_fences(body)
    if not text:
        raise ParseError("the Action Input is empty", _INPUT_HINT)
    if text.startswith("{"):
        try:
            value, _ = json.JSONDecoder().raw_decode(text)  # ignores prose after the object
        except (ValueError, RecursionError):
            value = None
            candidate = _balanced_object(text)
            if candidate is not None:
                try:  # single-quoted dicts, Python literals
                    value = ast.literal_eval(candidate)
                except Exception:  # noqa: BLE001 - literal_eval raises many types, incl. RecursionError
                    value = None
        if not isinstance(value, dict) or not _json_safe(value):
            raise ParseError("the Action Input is not a valid JSON object", _INPUT_HINT)
        return value
    # Plain text for single-string tools; a JSON string literal is unwrapped.
    first = text
    if len(first) >= 2 and first[0] == first[-1] and first[0] in "\"'":
        try:
            unquoted = json.loads(first) if first[0] == '"' else ast.literal_eval(first)
            if isinstance(unquoted, str):
                first = unquoted
        except Exception:  # noqa: BLE001 - any failure means: keep the text as is
            first = first[1:-1]
    return first.strip()


def parse_step(text: str, tool_names: Sequence[str]) -> ParsedAction | ParsedFinal:
    """Parse one model step. Raises only ParseError."""
    if not isinstance(text, str):
        raise ParseError("the model returned no text")
    raw = text
    text = _TRUNCATED_STOP.sub("", text.replace("\r\n", "\n"))
    parts = _split_keywords(text)
    # A hallucinated "Observation:" ends the step: everything after it was invented.
    for i, (kw, _) in enumerate(parts):
        if kw == "observation":
            parts = parts[:i]
            break
    kws = [kw for kw, _ in parts]
    thought_parts = [body.strip() for kw, body in parts if kw in ("", "thought") and body.strip()]
    has_final = "final answer" in kws
    has_action = "action" in kws

    if has_final and has_action:
        raise ParseError(
            "the step has both an Action and a Final Answer",
            "Write either an Action with its Action Input (then wait for the Observation), "
            "or a Final Answer, not both.",
        )
    if has_final:
        i = kws.index("final answer")
        thought = "\n".join(body.strip() for kw, body in parts[:i] if kw in ("", "thought") and body.strip())
        answer = parts[i][1].strip()
        if not answer:
            raise ParseError("the Final Answer is empty", "Write the answer right after 'Final Answer:'.")
        return ParsedFinal(thought=thought or None, answer=answer, raw=raw)
    if has_action:
        i = kws.index("action")
        name = _clean_tool_name(parts[i][1])
        valid = ", ".join(tool_names) if tool_names else "(none)"
        if not name:
            raise ParseError("the Action names no tool", f"Write 'Action: <tool>' with one of: {valid}.")
        tool = _match_tool(name, tool_names)
        if tool is None:
            raise ParseError(
                f"unknown tool {name!r}",
                f"Valid tools are: {valid}. Use one of them, or write 'Final Answer: <answer>'.",
            )
        later = kws[i + 1 :]
        if "action input" not in later:
            raise ParseError(
                f"the Action {tool!r} has no Action Input",
                f"After 'Action: {tool}' write a line 'Action Input: <JSON object of arguments>'.",
            )
        j = i + 1 + later.index("action input")
        action_input = parse_action_input(parts[j][1])
        thought = "\n".join(body.strip() for kw, body in parts[:i] if kw in ("", "thought") and body.strip())
        return ParsedAction(thought=thought or None, action=tool, action_input=action_input, raw=raw)
    if "action input" in kws:
        raise ParseError("an Action Input without an Action", "Write 'Action: <tool name>' before 'Action Input:'.")
    if thought_parts:
        raise ParseError("the step has neither an Action nor a Final Answer")
    raise ParseError("the model returned an empty step")
