"""calculator: correct arithmetic, refusals of everything else, bounds checked before computing."""
from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankact.tools import ToolArgumentError, ToolError, ToolExecutionError, calculator
from rankact.tools.calculator import CalculatorError, evaluate, format_number


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17 * 23", "391"),
        ("7 / 2", "3.5"),
        ("6 / 3", "2"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -2", "0.25"),
        ("-(3 + 4) * 2", "-14"),
        ("+5", "5"),
        ("1 / 3", "0.333333333333"),
        ("0.1 + 0.2", "0.3"),
        ("sqrt(16)", "4"),
        ("sqrt(2)", "1.41421356237"),
        ("log(8, 2)", "3"),
        ("log10(1000)", "3"),
        ("exp(0)", "1"),
        ("sin(0) + cos(0)", "1"),
        ("abs(-3.5)", "3.5"),
        ("round(2.567, 2)", "2.57"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("min(4, 2, 8) + max(1, 9)", "11"),
        ("factorial(5)", "120"),
        ("pi", "3.14159265359"),
        ("e", "2.71828182846"),
        ("2 * pi", "6.28318530718"),
        ("3 × 4 ÷ 2", "6"),
        ("5 − 2", "3"),
        ("17 * 23 =", "391"),
        ("`12 + 1`", "13"),
        ("1e3 + 1", "1001"),
        ("2**100", str(2**100)),
    ],
)
def test_arithmetic(expression, expected):
    assert calculator.invoke({"expression": expression}).text == expected


def test_plain_string_input():
    assert calculator.single_string_input
    assert calculator.invoke("12 * (3 + 1)").text == "48"


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.integers(min_value=-50, max_value=50).map(str),
        lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        max_leaves=12,
    )
)
def test_matches_python_on_integer_arithmetic(expression):
    assert evaluate(expression) == eval(expression)  # trusted: generated integer arithmetic only


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('echo hi')", "attribute access (.system) is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("().__class__.__bases__[0]", "not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1+1')", "unknown function 'eval'"),
        ("x + 1", "unknown name 'x'"),
        ("math.sqrt(4)", "attribute access (.sqrt)"),
        ("(lambda: 1)()", "only these functions"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[i for i in range(3)]", "ListComp is not allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("sqrt(x=4)", "positional"),
        ("max(*[1, 2])", "positional"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("a := 3", "not a valid arithmetic expression"),
        ("import os", "not a valid arithmetic expression"),
        ("2 ^ 3", "use ** for powers"),
        ("6 & 3", "not supported"),
        ("1 << 100", "not supported"),
        ("1,000", "thousands separators"),
        ("1,000,000 * 2", "1000, not 1,000"),
        ("2(3 + 4)", "use * for multiplication"),
        ("sqrt", "is a function"),
        ("sqrt(1, 2)", "sqrt takes 1 argument"),
        ("", "empty expression"),
        ("1 +", "not a valid arithmetic expression"),
    ],
)
def test_refusals_are_clear_errors(expression, fragment):
    with pytest.raises(CalculatorError) as info:
        calculator.invoke({"expression": expression})
    assert fragment in str(info.value)
    assert isinstance(info.value, ToolExecutionError)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("9**9**9", "too large"),
        ("10**10**10", "too large"),
        ("factorial(10**6)", "too large"),
        ("factorial(171)", "at most 170"),
        ("factorial(-1)", "non-negative"),
        ("factorial(2.5)", "non-negative integer"),
        ("(10**300) * (10**300)", "too large"),
        ("2**1024 * 1.0", "too large"),
        ("exp(1000)", "too large"),
        ("1e308 * 10", "too large"),
        ("2.0 ** 5000", "too large"),
        ("9" * 400, "too large"),
        ("(" * 300 + "1" + ")" * 300, "too long"),
        ("1" + "+1" * 300, "too long"),
        ("round(1.5, 10**9)", "small integer"),
    ],
)
def test_bounds_fail_at_once(expression, fragment):
    start = time.monotonic()
    with pytest.raises(CalculatorError, match=fragment):
        evaluate(expression)
    assert time.monotonic() - start < 0.1


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "sqrt: math domain error"),
        ("log(0)", "log"),
        ("(-8) ** (1/3)", "not a real number"),
    ],
)
def test_math_errors(expression, fragment):
    with pytest.raises(ToolError, match=fragment):
        calculator.invoke(expression)


def test_wrong_argument_shape_is_validation_error():
    with pytest.raises(ToolArgumentError, match="expression"):
        calculator.invoke({"expr": "1+1"})


def test_format_number():
    assert format_number(3) == "3"
    assert format_number(2.0) == "2"
    assert format_number(-0.0) == "0"
    assert format_number(1 / 7) == "0.142857142857"
    assert format_number(1e20) == "1e+20"
    assert format_number(math.pi * 1e-9) == "3.14159265359e-09"
