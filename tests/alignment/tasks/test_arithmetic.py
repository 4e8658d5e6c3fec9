"""Arithmetic in many phrasings: held-out phrasings really are held out, and every answer is
what the words ask."""
from __future__ import annotations

import re

import pytest

from rankact.alignment.tasks.arithmetic import OPERATIONS, TEMPLATES, number_words, templates
from rankact.alignment.tasks.datasets import parse_preset, preset_tasks


@pytest.mark.parametrize(("n", "words"), [(0, "zero"), (13, "thirteen"), (40, "forty"), (42, "forty-two"),
                                          (100, "one hundred"), (342, "three hundred forty-two"),
                                          (1000, "one thousand"), (2618, "two thousand six hundred eighteen")])
def test_number_words(n, words):
    assert number_words(n) == words


def test_number_words_refuses_what_it_cannot_say():
    with pytest.raises(ValueError):
        number_words(10000)


def _skeleton(text: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "N", text).lower()


def test_every_operation_has_phrasings_in_every_group_and_no_group_shares_one():
    for op in OPERATIONS:
        for group in ("train", "dev", "test"):
            assert [t for t in templates(group) if t.op == op], (op, group)
    assert len({t.id for t in TEMPLATES}) == len(TEMPLATES)
    groups_of: dict[str, set[str]] = {}
    for template in TEMPLATES:  # a wording differing only in number form stays in one group
        groups_of.setdefault(_skeleton(template.text), set()).add(template.group)
    assert {skeleton: groups for skeleton, groups in groups_of.items() if len(groups) > 1} == {}


EXPECTED = {
    "add": lambda v: v["a"] + v["b"], "sub": lambda v: v["a"] - v["b"], "mul": lambda v: v["a"] * v["b"],
    "div": lambda v: v["a"] / v["b"], "square": lambda v: v["a"] ** 2, "two_step": lambda v: (v["a"] + v["b"]) * v["c"],
}


@pytest.mark.parametrize("spec", ["arith-phrased:dev", "arith-phrased:test", "arith-heldout:dev", "arith-heldout:test"])
def test_answers_are_what_the_words_ask(spec):
    name, split = parse_preset(spec)
    tasks = preset_tasks(name, split)
    assert len(tasks) == 200 and len({t.question for t in tasks}) == 200
    for task in tasks:
        values, op = task.metadata["operands"], task.metadata["op"]
        assert float(task.answers[0]) == EXPECTED[op](values)
        for value in values.values():  # every operand is in the question, as digits or as words
            assert re.search(rf"\b{value}\b", task.question) or number_words(value) in task.question


def test_splits_differ_in_form_and_in_instance():
    def groups(spec):
        return {t.metadata["template_group"] for t in preset_tasks(*parse_preset(spec))}

    assert groups("arith-phrased:dev") == groups("arith-phrased:test") == {"train"}
    assert groups("arith-heldout:dev") == {"dev"} and groups("arith-heldout:test") == {"test"}
    dev = {t.question for t in preset_tasks("arith-phrased", "dev")}
    test = {t.question for t in preset_tasks("arith-phrased", "test")}
    assert not dev & test
    # Reproducible: the same call gives the same questions.
    assert [t.question for t in preset_tasks("arith-heldout", "test")] == \
        [t.question for t in preset_tasks("arith-heldout", "test")]
    trained = {t.metadata["template"] for t in preset_tasks("arith-phrased", "dev")}
    held_out = {t.metadata["template"] for t in preset_tasks("arith-heldout", "test")}
    assert trained and held_out and not trained & held_out
