"""Arithmetic asked in many phrasings, split by phrasing as well as by instance.

The `arith` preset asks every question in one symbolic form ("What is 12 * 34?"); a policy
trained on it learns that form, not the skill: last round's adapter scored 98.5% there and
22.5% on arithmetic asked in other words. These presets ask the same operations through
templates, and every template belongs to exactly one group:

| group | templates | used by |
|---|---|---|
| `train` | 5 a operation | `arith-phrased:dev` (train and measure in distribution), `arith-phrased:test` (report) |
| `dev` | 2 a operation, never trained on | `arith-heldout:dev`: out of distribution, for choosing recipes |
| `test` | 2 a operation, never trained on nor used to choose | `arith-heldout:test`: out of distribution, reported once |

So `arith-heldout:test` differs from everything trained or tuned on in form (its templates) and
in instance (its seed). Templates are written to differ in wording, word order ("subtract A
from B"), framing (word problems) and number form (numbers written in words), not only in a
word or two. `tests/alignment/tasks/test_arithmetic.py` checks that no two groups share a
template's wording and that every answer is what the words ask.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Group = Literal["train", "dev", "test"]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for 0 <= n < 10000: 342 -> "three hundred forty-two"."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words takes 0..9999, not {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{_ONES[thousands]} thousand" + (f" {number_words(rest)}" if rest else "")


@dataclass(frozen=True)
class Operation:
    """Operands drawn from a seeded generator and the answer they give."""

    name: str
    operands: Callable[[random.Random], dict[str, int]]
    answer: Callable[[dict[str, int]], int]


def _add(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(110, 999), "b": rng.randint(110, 999)}


def _sub(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(300, 999), rng.randint(11, 290)
    return {"a": a, "b": b}


def _mul(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(11, 99), "b": rng.randint(11, 99)}


def _div(rng: random.Random) -> dict[str, int]:
    b, quotient = rng.randint(3, 40), rng.randint(11, 99)
    return {"a": b * quotient, "b": b}


def _square(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(11, 99)}


def _two_step(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(11, 99), "b": rng.randint(11, 99), "c": rng.randint(2, 9)}


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("add", _add, lambda v: v["a"] + v["b"]),
    Operation("sub", _sub, lambda v: v["a"] - v["b"]),
    Operation("mul", _mul, lambda v: v["a"] * v["b"]),
    Operation("div", _div, lambda v: v["a"] // v["b"]),
    Operation("square", _square, lambda v: v["a"] * v["a"]),
    Operation("two_step", _two_step, lambda v: (v["a"] + v["b"]) * v["c"]),
)}


@dataclass(frozen=True)
class Template:
    """One phrasing: `{a}`, `{b}`, `{c}` are digits, `{a_words}` ... the same numbers in words."""

    id: str
    op: str
    group: Group
    text: str


TEMPLATES: tuple[Template, ...] = (
    # addition
    Template("add-plus", "add", "train", "What is {a} plus {b}?"),
    Template("add-sum-of", "add", "train", "What is the sum of {a} and {b}?"),
    Template("add-imperative", "add", "train", "Add {a} and {b}."),
    Template("add-apples", "add", "train", "You have {a} apples and pick {b} more. How many apples do you have now?"),
    Template("add-words", "add", "train", "What is {a_words} plus {b_words}?"),
    Template("add-together", "add", "dev", "How much do {a} and {b} make together?"),
    Template("add-increased", "add", "dev", "Start from {b} and increase it by {a}. What number do you reach?"),
    Template("add-total-visitors", "add", "test", "A museum had {a} visitors on Saturday and {b} on Sunday. "
             "How many visitors came that weekend?"),
    Template("add-combined-words", "add", "test", "Combine {a_words} with {b_words}: what is the total?"),
    # subtraction
    Template("sub-minus", "sub", "train", "What is {a} minus {b}?"),
    Template("sub-from", "sub", "train", "Subtract {b} from {a}."),
    Template("sub-difference", "sub", "train", "What is the difference between {a} and {b}?"),
    Template("sub-shop", "sub", "train", "A shop had {a} items and sold {b} of them. How many are left?"),
    Template("sub-words", "sub", "train", "What is {a_words} minus {b_words}?"),
    Template("sub-take-away", "sub", "dev", "How much is left if you take {b} away from {a}?"),
    Template("sub-exceed", "sub", "dev", "By how much does {a} exceed {b}?"),
    Template("sub-deducted", "sub", "test", "What remains when {b} is deducted from {a}?"),
    Template("sub-fewer-words", "sub", "test", "What number is {b_words} fewer than {a_words}?"),
    # multiplication
    Template("mul-times", "mul", "train", "What is {a} times {b}?"),
    Template("mul-product", "mul", "train", "What is the product of {a} and {b}?"),
    Template("mul-imperative", "mul", "train", "Multiply {a} by {b}."),
    Template("mul-boxes", "mul", "train", "There are {a} boxes with {b} pens in each. How many pens are there?"),
    Template("mul-words", "mul", "train", "What is {a_words} times {b_words}?"),
    Template("mul-multiplied", "mul", "dev", "How much is {a} multiplied by {b}?"),
    Template("mul-rows", "mul", "dev", "A hall has {a} rows of {b} seats. How many seats does it have?"),
    Template("mul-tickets", "mul", "test", "One ticket costs {b} dollars. What do {a} tickets cost, in dollars?"),
    Template("mul-factor-words", "mul", "test", "What do you get when {a_words} is scaled by a factor of {b_words}?"),
    # division
    Template("div-divided", "div", "train", "What is {a} divided by {b}?"),
    Template("div-imperative", "div", "train", "Divide {a} by {b}."),
    Template("div-quotient", "div", "train", "What is the quotient of {a} and {b}?"),
    Template("div-cookies", "div", "train", "{a} cookies are shared equally among {b} children. "
             "How many cookies does each child get?"),
    Template("div-words", "div", "train", "What is {a_words} divided by {b_words}?"),
    Template("div-go-into", "div", "dev", "How many times does {b} go into {a}?"),
    Template("div-parts", "div", "dev", "Split {a} into {b} equal parts. How big is each part?"),
    Template("div-bill", "div", "test", "{b} friends split a bill of {a} dollars evenly. How much does each one pay?"),
    Template("div-over-words", "div", "test", "What is {a_words} over {b_words}?"),
    # squares
    Template("square-squared", "square", "train", "What is {a} squared?"),
    Template("square-power", "square", "train", "What is {a} to the power of 2?"),
    Template("square-of", "square", "train", "Compute the square of {a}."),
    Template("square-tiles", "square", "train", "A square floor is {a} tiles long on each side. How many tiles cover it?"),
    Template("square-words", "square", "train", "What is {a_words} squared?"),
    Template("square-second-power", "square", "dev", "What is {a} raised to the second power?"),
    Template("square-area", "square", "dev", "What is the area, in square meters, of a square with sides of {a} meters?"),
    Template("square-itself", "square", "test", "Multiply {a} by itself. What do you get?"),
    Template("square-words-by-itself", "square", "test", "What is {a_words} multiplied by {a_words}?"),
    # two steps
    Template("two-step-then", "two_step", "train", "Add {a} and {b}, then multiply the result by {c}."),
    Template("two-step-times-sum", "two_step", "train", "What is {c} times the sum of {a} and {b}?"),
    Template("two-step-bags", "two_step", "train", "Each of {c} bags holds {a} red and {b} blue marbles. "
             "How many marbles are there in all?"),
    Template("two-step-words", "two_step", "train", "What is {a_words} plus {b_words}, all times {c_words}?"),
    Template("two-step-multiply-sum", "two_step", "train", "Multiply the sum of {a} and {b} by {c}."),
    Template("two-step-trips", "two_step", "dev", "A van carries {a} boxes in the morning and {b} in the "
             "afternoon, every day for {c} days. How many boxes does it carry?"),
    Template("two-step-first", "two_step", "dev", "First add {a} to {b}. Then multiply what you got by {c}. "
             "What is the result?"),
    Template("two-step-weeks", "two_step", "test", "Sam reads {a} pages on Mondays and {b} pages on Tuesdays. "
             "How many pages does he read on those days over {c} weeks?"),
    Template("two-step-words-total", "two_step", "test", "Take the total of {a_words} and {b_words} "
             "and multiply it by {c_words}."),
)

# Which template group each split of each preset draws from.
PRESET_GROUPS: dict[str, dict[str, Group]] = {
    "arith-phrased": {"dev": "train", "test": "train"},
    "arith-heldout": {"dev": "dev", "test": "test"},
}
# Instances come from seeds of their own, distinct from `arith`'s (1001, 2002).
PHRASED_SEEDS = {"dev": 3003, "test": 4004}


def templates(group: Group) -> list[Template]:
    return [t for t in TEMPLATES if t.group == group]


def render(template: Template, values: dict[str, int]) -> str:
    words = {f"{key}_words": number_words(value) for key, value in values.items()}
    return template.text.format(**values, **words)


def phrased_questions(preset: str, split: str, count: int) -> list[tuple[str, int, Template, dict[str, int]]]:
    """`count` distinct (question, answer, template, operands) for a preset's split; operations are drawn
    uniformly, then a template of the split's group for that operation."""
    group = PRESET_GROUPS[preset][split]
    by_op: dict[str, list[Template]] = {}
    for template in templates(group):
        by_op.setdefault(template.op, []).append(template)
    rng = random.Random(PHRASED_SEEDS[split] + (0 if preset == "arith-phrased" else 1))
    out: list[tuple[str, int, Template, dict[str, int]]] = []
    seen: set[str] = set()
    ops = sorted(by_op)
    while len(out) < count:
        op = OPERATIONS[rng.choice(ops)]
        template = rng.choice(by_op[op.name])
        values = op.operands(rng)
        question = render(template, values)
        if question in seen:
            continue
        seen.add(question)
        out.append((question, op.answer(values), template, values))
    return out
