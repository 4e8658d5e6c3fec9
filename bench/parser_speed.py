"""Is `parse_step` linear on any model output? Time vs input size for adversarial inputs,
side by side with a well-formed step of the same size and with the previous algorithm
(its three regexes, swapped in for the run), all measured in this one run.

    PYTHONPATH=. .venv/bin/python bench/parser_speed.py                  # sizes 12.5k..100k chars
    PYTHONPATH=. .venv/bin/python bench/parser_speed.py --previous-max 16000

The previous algorithm is quadratic, so it is timed only up to --previous-max characters
(at 100k it would take minutes per input). The run fails (exit 1) if any adversarial input
of 100k characters takes over --bound seconds (default 1.0, generous: ~100x the measured
time), so the bench doubles as the "100k-character adversarial inputs" check.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rankact.agent import parser

TOOLS = ["calculator", "search"]

# The previous patterns and tool-name cleanup (before issue 15), kept as the baseline.
_PREVIOUS_KEYWORD = re.compile(
    r"\**[ \t]*\b(?P<kw>final[ \t]+answer|action[ \t]+input|action|thought|observation)[ \t]*\**[ \t]*:[ \t]*\**",
    re.IGNORECASE,
)
_PREVIOUS_FENCE = re.compile(r"^```[^\n`]*\n?(?P<body>.*?)\n?```", re.DOTALL)
_PREVIOUS_PARENS = re.compile(r"\s*[\(\[].*$")


def previous_split_keywords(text: str) -> list[tuple[str, str]]:
    parts, last_kw, last_end = [], "", 0
    for match in _PREVIOUS_KEYWORD.finditer(text):
        parts.append((last_kw, text[last_end:match.start()]))
        last_kw, last_end = parser._canon(match.group("kw")), match.end()
    parts.append((last_kw, text[last_end:]))
    return parts


def previous_clean_tool_name(body: str) -> str:
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    name = (lines[0] if lines else "").strip("`*'\" \t")
    return _PREVIOUS_PARENS.sub("", name).strip("`*'\" \t.:")


@contextmanager
def previous_algorithm() -> Iterator[None]:
    saved = parser._split_keywords, parser._clean_tool_name, parser._FENCE
    parser._split_keywords, parser._clean_tool_name, parser._FENCE = (
        previous_split_keywords, previous_clean_tool_name, _PREVIOUS_FENCE)
    try:
        yield
    finally:
        parser._split_keywords, parser._clean_tool_name, parser._FENCE = saved


def _fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


# name -> input of about n characters
INPUTS: dict[str, Callable[[int], str]] = {
    "well-formed step (baseline)": lambda n: ("Thought: " + _fill("the tower is 330 m tall. ", n - 80)
                                              + '\nAction: calculator\nAction Input: {"expression": "330*2"}'),
    "stars": lambda n: "*" * n,
    "spaces and tabs": lambda n: _fill(" \t", n),
    "bold markers": lambda n: _fill("**", n),
    "keyword, spaces, no colon": lambda n: "Thought" + " " * (n - 8) + "x",
    "'final' then spaces": lambda n: "final" + " " * (n - 5),
    "repeated keywords": lambda n: _fill("Thought: a ** Action:", n),
    "newline, spaces, 'Obs'": lambda n: "\n" + " " * (n - 5) + "Obs x",
    "tool name with spaces": lambda n: "Action: search" + " " * (n - 40) + "x\nAction Input: {}",
    "unclosed fence": lambda n: "Action: search\nAction Input: ```" + "a" * (n - 32),
    "deep braces": lambda n: "Action: search\nAction Input: " + "{" * (n - 29),
    "unterminated string": lambda n: 'Action: search\nAction Input: {"q": "' + "x" * (n - 36),
}


def seconds(text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            parser.parse_step(text, TOOLS)
        except parser.ParseError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="12500,25000,50000,100000")
    ap.add_argument("--previous-max", type=int, default=8000, help="largest input timed with the previous algorithm")
    ap.add_argument("--bound", type=float, default=1.0, help="seconds allowed for any 100k-character input")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    prev_sizes = [s for s in (2000, 4000, 8000, 16000, 32000) if s <= args.previous_max]
    head = " ".join(f"{s:>9}" for s in sizes)
    prev_head = " ".join(f"{'prev ' + str(s // 1000) + 'k':>9}" for s in prev_sizes)
    print(f"parse_step seconds (best of 3) by input size in characters\n{'input':<30}{head}  | {prev_head}")
    worst = 0.0
    for name, make in INPUTS.items():
        now = [seconds(make(n)) for n in sizes]
        with previous_algorithm():
            before = [seconds(make(n), repeat=1) for n in prev_sizes]
        if "baseline" not in name and 100_000 in sizes:
            worst = max(worst, now[sizes.index(100_000)])
        print(f"{name:<30}" + " ".join(f"{t:9.4f}" for t in now) + "  | " + " ".join(f"{t:9.3f}" for t in before))
    print(f"slowest adversarial input at 100k characters: {worst:.4f} s (bound {args.bound} s)")
    return 0 if worst <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
