"""`calculator`: arithmetic evaluated on the Python AST, never with eval.

Only numbers, + - * / // % **, unary +/-, parentheses, a whitelist of math functions and
the constants pi and e are accepted; everything else is refused with a message a model
can act on. Sizes are checked before computing, so `9**9**9` fails at once instead of
eating the CPU, and every intermediate integer is kept under `MAX_DIGITS` digits.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

from rankact.tools.base import ToolExecutionError, tool

MAX_LENGTH = 500  # characters of expression; also bounds parser/evaluator recursion
MAX_DIGITS = 310  # about the range of a float (1.8e308)
MAX_FACTORIAL = 170  # 170! is the largest factorial that fits a float
_MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1

Number = int | float


class CalculatorError(ToolExecutionError):
    """The expression was refused or could not be evaluated; the message says why."""


def _check_int(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > _MAX_BITS:
        raise CalculatorError(f"result too large (more than {MAX_DIGITS} digits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result too large")
    return value


def _power(base: Number, exp: Number) -> Number:
    if isinstance(base, int) and isinstance(exp, int) and exp >= 0:
        # Bound the size from logarithms BEFORE computing: 9**9**9 must fail at once.
        if abs(base) > 1 and exp * math.log10(abs(base)) > MAX_DIGITS:
            raise CalculatorError(f"result too large (more than {MAX_DIGITS} digits)")
        return base**exp
    if base == 0 and exp < 0:
        raise CalculatorError("division by zero (zero to a negative power)")
    try:
        return math.pow(base, exp)
    except OverflowError:
        raise CalculatorError("result too large") from None
    except ValueError:
        raise CalculatorError("result is not a real number (negative base with a fractional exponent)") from None


def _true_div(a: Number, b: Number) -> Number:
    return a / b


_BINOPS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _true_div,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_OP_HINTS: dict[type[ast.operator], str] = {
    ast.BitXor: "'^' is not supported; use ** for powers (2**8)",
    ast.BitAnd: "'&' is not supported",
    ast.BitOr: "'|' is not supported",
    ast.LShift: "'<<' is not supported",
    ast.RShift: "'>>' is not supported",
    ast.MatMult: "'@' is not supported",
}


def _factorial(n: Number) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or n < 0:
        raise CalculatorError("factorial needs a non-negative integer")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial argument too large (at most {MAX_FACTORIAL})")
    return math.factorial(n)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_DIGITS:
        raise CalculatorError("round: the number of digits must be a small integer")
    return round(x, ndigits)


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


# name -> (function, min args, max args)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "log": (_log, 1, 2),
    "ln": (math.log, 1, 1),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "min": (min, 1, None),
    "max": (max, 1, None),
    "factorial": (_factorial, 1, 1),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _allowed_names() -> str:
    return ", ".join(sorted(FUNCTIONS)) + "; constants " + ", ".join(CONSTANTS)


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {type(node.value).__name__} {node.value!r}")
        return _check_int(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        op_type = type(node.op)
        if op_type not in _BINOPS:
            raise CalculatorError(_OP_HINTS.get(op_type, f"operator {op_type.__name__} is not supported"))
        left, right = _eval(node.left), _eval(node.right)
        if op_type in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
            raise CalculatorError("division by zero")
        try:
            return _check_int(_BINOPS[op_type](left, right))
        except OverflowError:
            raise CalculatorError("result too large") from None
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise CalculatorError(f"{node.id} is a function: call it like {node.id}(2)")
        raise CalculatorError(f"unknown name {node.id!r}; allowed: {_allowed_names()}")
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Tuple):
        raise CalculatorError("a list of values is not an expression (write 1000, not 1,000)")
    raise CalculatorError(f"{type(node).__name__} is not allowed; only arithmetic on numbers")


def _call(node: ast.Call) -> Number:
    func = node.func
    if not isinstance(func, ast.Name):
        if isinstance(func, ast.Constant | ast.BinOp | ast.UnaryOp):
            raise CalculatorError("use * for multiplication, e.g. 2*(3+4)")
        if isinstance(func, ast.Attribute):
            raise CalculatorError(f"attribute access (.{func.attr}) is not allowed; functions: {_allowed_names()}")
        raise CalculatorError(f"only these functions can be called: {_allowed_names()}")
    if func.id not in FUNCTIONS:
        raise CalculatorError(f"unknown function {func.id!r}; allowed: {_allowed_names()}")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise CalculatorError(f"{func.id}: only plain positional arguments are allowed")
    fn, lo, hi = FUNCTIONS[func.id]
    if len(node.args) < lo or (hi is not None and len(node.args) > hi):
        want = str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        raise CalculatorError(f"{func.id} takes {want} argument(s), got {len(node.args)}")
    args = [_eval(a) for a in node.args]
    try:
        return _check_int(fn(*args))
    except CalculatorError:
        raise
    except OverflowError:
        raise CalculatorError(f"{func.id}: result too large") from None
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise CalculatorError(f"{func.id}: {exc}") from None


_THOUSANDS = re.compile(r"(?<![\w.])\d{1,3}(,\d{3})+(?![\d.])")
_REPLACEMENTS = {"×": "*", "÷": "/", "−": "-", "–": "-", "·": "*", "²": "**2", "³": "**3"}


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression; raises CalculatorError with a clear message."""
    text = expression.strip().strip("`").strip()
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    text = text.rstrip("=").strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_LENGTH:
        raise CalculatorError(f"expression too long (at most {MAX_LENGTH} characters)")
    if "," in text and _THOUSANDS.fullmatch(text.replace(" ", "")):
        raise CalculatorError("remove thousands separators: write 1000, not 1,000")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        hint = "; remove thousands separators (1000, not 1,000)" if _THOUSANDS.search(text) else ""
        raise CalculatorError(f"not a valid arithmetic expression: {exc.msg}{hint}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CalculatorError("expression too deeply nested") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except RecursionError:
        raise CalculatorError("expression too deeply nested") from None


def format_number(value: Number) -> str:
    """Ints as ints; floats with up to 12 significant digits (2.0 -> "2", 1/3 -> "0.333333333333")."""
    if isinstance(value, int):
        return str(value)
    text = format(value, ".12g")
    return "0" if text == "-0" else text


@tool(timeout=5.0, description="Evaluate an arithmetic expression, e.g. 17 * 23 or sqrt(2) / 3.")
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (the prompt gets the one-line description above).

    Supports + - * / // % ** and parentheses, the functions sqrt, log, log10, exp, sin, cos,
    tan, abs, round, floor, ceil, min, max, factorial and the constants pi and e.

    Args:
        expression: the arithmetic expression to evaluate, e.g. 17 * 23
    """
    return format_number(evaluate(expression))
