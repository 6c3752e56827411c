"""The CALC expressions of access security rules: ``RULE(1, WRITE) { CALC("A=0") }``.

EPICS evaluates a rule's CALC with the values of the group's inputs (``INPA`` ... ``INPL``)
and applies the rule only when the result is non-zero. This is the subset of EPICS' calc
syntax that such rules use: numbers, the inputs ``A`` ... ``L``, arithmetic (``+ - * / %``,
``^`` or ``**``), comparisons (``= == # != < <= > >=``), logic (``&& || !``, ``AND OR NOT``),
``?:``, parentheses and ``ABS``, ``MIN``, ``MAX``. It is compiled once, when the file is
read, into a closure (no ``eval``), so a malformed expression is refused at load time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

Inputs = Mapping[str, float]
Expression = Callable[[Inputs], float]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>\*\*|&&|\|\||==|!=|<=|>=|[-+*/%^()<>=#!?:,]))"
)

#: Binary operators by precedence, lowest first.
_LEVELS: tuple[dict[str, Callable[[float, float], float]], ...] = (
    {"||": lambda a, b: float(bool(a) or bool(b)), "OR": lambda a, b: float(bool(a) or bool(b))},
    {
        "&&": lambda a, b: float(bool(a) and bool(b)),
        "AND": lambda a, b: float(bool(a) and bool(b)),
    },
    {
        "=": lambda a, b: float(a == b),
        "==": lambda a, b: float(a == b),
        "#": lambda a, b: float(a != b),
        "!=": lambda a, b: float(a != b),
    },
    {
        "<": lambda a, b: float(a < b),
        "<=": lambda a, b: float(a <= b),
        ">": lambda a, b: float(a > b),
        ">=": lambda a, b: float(a >= b),
    },
    {"+": lambda a, b: a + b, "-": lambda a, b: a - b},
    {
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b if b else math.nan,
        "%": lambda a, b: math.fmod(a, b) if b else math.nan,
    },
)
_FUNCTIONS: dict[str, Callable[..., float]] = {"ABS": abs, "MIN": min, "MAX": max}
INPUT_NAMES = tuple("ABCDEFGHIJKL")


class CalcError(ValueError):
    """A CALC expression that cannot be compiled."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise CalcError(f"CALC {text!r}: cannot read {text[pos:]!r}")
        out.append(match.group(match.lastgroup or "op").upper())
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise CalcError(f"CALC {self.text!r}: expected {expected or 'more'}, got {token}")
        self.pos += 1
        return token

    def parse(self) -> Expression:
        expr = self.conditional()
        if self.peek() is not None:
            raise CalcError(f"CALC {self.text!r}: unexpected {self.peek()!r}")
        return expr

    def conditional(self) -> Expression:
        test = self.binary(0)
        if self.peek() != "?":
            return test
        self.take("?")
        then = self.conditional()
        self.take(":")
        other = self.conditional()
        return lambda v: then(v) if test(v) else other(v)

    def binary(self, level: int) -> Expression:
        if level == len(_LEVELS):
            return self.power()
        left = self.binary(level + 1)
        while self.peek() in _LEVELS[level]:
            op = _LEVELS[level][self.take()]
            right = self.binary(level + 1)
            left = (lambda f, a, b: lambda v: f(a(v), b(v)))(op, left, right)
        return left

    def power(self) -> Expression:
        base = self.unary()
        if self.peek() in ("^", "**"):
            self.take()
            exponent = self.power()
            return lambda v: float(base(v) ** exponent(v))
        return base

    def unary(self) -> Expression:
        token = self.peek()
        if token in ("!", "NOT"):
            self.take()
            inner = self.unary()
            return lambda v: float(not inner(v))
        if token == "-":
            self.take()
            negated = self.unary()
            return lambda v: -negated(v)
        if token == "+":
            self.take()
            return self.unary()
        return self.atom()

    def atom(self) -> Expression:
        token = self.take()
        if token == "(":
            inner = self.conditional()
            self.take(")")
            return inner
        if token in _FUNCTIONS:
            func = _FUNCTIONS[token]
            self.take("(")
            args = [self.conditional()]
            while self.peek() == ",":
                self.take(",")
                args.append(self.conditional())
            self.take(")")
            return lambda v: float(func(*(a(v) for a in args)))
        if token in INPUT_NAMES:
            return lambda v: v[token]
        try:
            number = float(token)
        except ValueError:
            raise CalcError(f"CALC {self.text!r}: unknown name {token!r}") from None
        return lambda v: number


def compile_calc(text: str) -> tuple[Expression, frozenset[str]]:
    """The expression as a function of the inputs, and the inputs (``A`` ...) it uses."""
    expr = _Parser(text).parse()
    used = frozenset(t for t in _tokens(text) if t in INPUT_NAMES)
    return expr, used
