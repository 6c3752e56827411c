"""EPICS access security files (ACF): read them, and say what a client may do.

The syntax and meaning are EPICS base's (Application Developer's Guide, "Access Security")::

    UAG(ops) {alice, bob}                   # user access groups
    HAG(consoles) {ctl1, "ctl2"}            # host access groups
    ASG(CONTROL) {                          # access security groups
        INPA("BL01:RE:Busy")                # inputs of the CALC rules (INPA ... INPL)
        RULE(1, READ)
        RULE(1, WRITE, TRAPWRITE) { UAG(ops) HAG(consoles) CALC("A=0") }
    }

A client's access to a PV of group G at level L (0 for a PV's value, 1 for the rest) is the
highest access of the rules of G whose level is >= L and whose conditions all hold: the
user is in one of the rule's UAGs (if it names any), the host in one of its HAGs (likewise,
compared without regard to case, as EPICS 7 does), its CALC is non-zero (a CALC whose inputs
cannot be read, or have no ``INP``, does not apply, as EPICS treats a disconnected input).
A PV whose group the file does not define belongs to ``DEFAULT``; a file without ``DEFAULT``
gets an empty one (no access at all), as in EPICS. A file is accepted exactly when EPICS
base's ``ascheck`` accepts it (a test compares them on good and malformed files).

The parser is hand-written (a tokenizer and a recursive descent that mirrors asLib's
grammar); its parse tree has the shape of p4p's ``p4p.asLib.yacc.parse``, which a test
compares it with when p4p is installed. README says why we do not depend on p4p.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calc import INPUT_NAMES, CalcError, Expression, compile_calc

#: The group of a PV that nothing assigns to another group.
DEFAULT_GROUP = "DEFAULT"


class ACFError(ValueError):
    """An access security file that cannot be read; the message gives the line."""


class Access(enum.IntEnum):
    """What a rule grants, in increasing order (a rule's access includes the lower ones)."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Rule:
    """One ``RULE(level, access[, TRAPWRITE]) { UAG(...) HAG(...) CALC(...) }``."""

    level: int
    access: Access
    trapwrite: bool = False
    uags: tuple[str, ...] = ()
    hags: tuple[str, ...] = ()
    calc: str | None = None
    expression: Expression | None = field(default=None, compare=False, repr=False)
    calc_inputs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Grant:
    """A client's access to one group: the access, and whether its writes are trapped."""

    access: Access
    trapwrite: bool = False

    @property
    def read(self) -> bool:
        return self.access >= Access.READ

    @property
    def write(self) -> bool:
        return self.access >= Access.WRITE


NO_ACCESS = Grant(Access.NONE)


@dataclass(frozen=True)
class AccessGroup:
    """One ``ASG``: its inputs (``{"A": "BL01:RE:Busy"}``) and rules, in file order."""

    name: str
    inputs: Mapping[str, str]
    rules: tuple[Rule, ...]

    @property
    def uses_calc(self) -> bool:
        return any(rule.expression is not None for rule in self.rules)


InputReader = Callable[[str], float | None]

# -- tokens and parse tree (p4p's shape) -------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>[ \t\r]+)|(?P<newline>\n)|(?P<comment>\#[^\n]*)
    |(?P<quoted>"(?:[^"\n\\]|\\.)*")
    |(?P<word>[a-zA-Z0-9_\-+:.\[\]<>;]+)
    |(?P<literal>[(){},])""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"UAG", "HAG", "ASG", "RULE", "CALC"})
_INP = re.compile(r"INP[A-L]")

Tree = list[tuple[Any, ...]]


@dataclass(frozen=True)
class _Token:
    kind: str  # a keyword, INP, INTEGER, STRING or a literal character
    value: Any
    line: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, pos = 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ACFError(f"line {line}: illegal character {text[pos : pos + 5]!r}")
        pos = match.end()
        kind, value = match.lastgroup, match.group()
        if kind == "newline":
            line += 1
        elif kind == "quoted":
            tokens.append(_Token("STRING", value[1:-1], line))
        elif kind == "literal":
            tokens.append(_Token(value, value, line))
        elif kind == "word":
            if value in _KEYWORDS:
                tokens.append(_Token(value, value, line))
            elif _INP.fullmatch(value):
                tokens.append(_Token("INP", value, line))
            elif value.isdigit():
                tokens.append(_Token("INTEGER", int(value), line))
            else:
                tokens.append(_Token("STRING", value, line))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos].kind if self.pos < len(self.tokens) else None

    def take(self, *kinds: str) -> _Token:
        if self.pos >= len(self.tokens):
            last = self.tokens[-1].line if self.tokens else 1
            raise ACFError(f"line {last}: the file ends where {' or '.join(kinds)} was expected")
        token = self.tokens[self.pos]
        if kinds and token.kind not in kinds:
            raise ACFError(f"line {token.line}: expected {' or '.join(kinds)}, got {token.value!r}")
        self.pos += 1
        return token

    def strings(self) -> list[str]:
        names = [self.take("STRING").value]
        while self.peek() == ",":
            self.take(",")
            names.append(self.take("STRING").value)
        return names

    def parse(self) -> Tree:
        items: Tree = []
        while self.peek() is not None:
            keyword = self.take("UAG", "HAG", "ASG").kind
            self.take("(")
            name = self.take("STRING").value
            self.take(")")
            body: Any = None
            if self.peek() == "{":
                self.take("{")
                body = self.asg_body() if keyword == "ASG" else self.strings()
                self.take("}")
            items.append((keyword, name, body))
        if not items:
            raise ACFError("the file defines no UAG, HAG or ASG")
        return items

    def asg_body(self) -> Tree:
        items: Tree = []
        while self.peek() in ("INP", "RULE"):
            token = self.take()
            self.take("(")
            if token.kind == "INP":
                items.append(("INP", token.value[-1], self.take("STRING").value))
                self.take(")")
                continue
            level = self.take("INTEGER").value
            self.take(",")
            access = self.take("STRING").value
            trap = False
            if self.peek() == ",":
                self.take(",")
                trap_token = self.take("STRING")
                if trap_token.value not in ("TRAPWRITE", "NOTRAPWRITE"):
                    raise ACFError(
                        f"line {trap_token.line}: expected TRAPWRITE or NOTRAPWRITE, "
                        f"got {trap_token.value!r}"
                    )
                trap = trap_token.value == "TRAPWRITE"
            self.take(")")
            conditions: Tree | None = None
            if self.peek() == "{":
                self.take("{")
                conditions = []
                while self.peek() in ("UAG", "HAG", "CALC"):
                    kind = self.take().kind
                    self.take("(")
                    value: Any = self.take("STRING").value if kind == "CALC" else self.strings()
                    self.take(")")
                    conditions.append((kind, value))
                self.take("}")
            items.append(("RULE", level, access, trap, conditions))
        return items


def parse_tree(text: str) -> Tree:
    """The file as p4p's parser gives it: ``[("UAG", name, [users]), ("ASG", name, [...])]``."""
    return _Parser(text).parse()


# -- the configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class AccessConfig:
    """A parsed ACF: user and host groups, and the access security groups."""

    uags: Mapping[str, frozenset[str]]
    hags: Mapping[str, frozenset[str]]
    groups: Mapping[str, AccessGroup]
    source: str = ""

    @classmethod
    def from_text(cls, text: str, source: str = "") -> AccessConfig:
        """Read an ACF's text; ACFError (naming the line or the group) if it is malformed."""
        uags: dict[str, frozenset[str]] = {}
        hags: dict[str, frozenset[str]] = {}
        groups: dict[str, AccessGroup] = {}
        for kind, name, body in parse_tree(text):
            if kind == "UAG":
                uags[name] = uags.get(name, frozenset()) | frozenset(body or ())
            elif kind == "HAG":
                hags[name] = hags.get(name, frozenset()) | frozenset(h.lower() for h in body or ())
            else:
                if name in groups:
                    raise ACFError(f"ASG({name}) is defined twice")
                groups[name] = _group(name, body or [], uags, hags)
        groups.setdefault(DEFAULT_GROUP, AccessGroup(DEFAULT_GROUP, {}, ()))
        return cls(uags, hags, groups, source)

    @classmethod
    def from_file(cls, path: str | Path) -> AccessConfig:
        """Read an ACF; ACFError names the file."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ACFError(f"{path}: {exc.strerror or exc}") from exc
        try:
            return cls.from_text(text, str(path))
        except ACFError as exc:
            raise ACFError(f"{path}: {exc}") from exc

    def group(self, name: str) -> AccessGroup:
        """The group called ``name``, or ``DEFAULT`` when the file does not define it."""
        return self.groups.get(name) or self.groups[DEFAULT_GROUP]

    def grant(
        self,
        group: str,
        user: str,
        host: str,
        *,
        level: int = 0,
        read_input: InputReader | None = None,
    ) -> Grant:
        """What ``user`` on ``host`` may do with a PV of ``group`` at ``level`` (asLib's rule).

        ``read_input`` gives the value of an input PV by name (None when it cannot be read);
        without it, rules with a CALC do not apply.
        """
        asg = self.group(group)
        host = (host or "").lower()
        best, trap = Access.NONE, False
        values: dict[str, float] | None = None
        for rule in asg.rules:
            if rule.access <= best or rule.level < level:
                continue
            if rule.uags and not any(user in self.uags.get(u, ()) for u in rule.uags):
                continue
            if rule.hags and not any(host in self.hags.get(h, ()) for h in rule.hags):
                continue
            if rule.expression is not None:
                if read_input is None:
                    continue
                if values is None:
                    values = _read_inputs(asg.inputs, read_input)
                if not rule.calc_inputs <= values.keys():
                    continue  # an input that cannot be read: the rule does not apply
                try:
                    if not rule.expression(values):
                        continue
                except (ArithmeticError, ValueError):
                    continue
            best, trap = rule.access, rule.trapwrite
            if best == Access.WRITE:
                break
        return Grant(best, trap) if best else NO_ACCESS


def _read_inputs(inputs: Mapping[str, str], read_input: InputReader) -> dict[str, float]:
    values: dict[str, float] = {}
    for letter, pvname in inputs.items():
        value = read_input(pvname)
        if value is not None:
            values[letter] = value
    return values


def _group(name: str, body: Tree, uags: Mapping[str, Any], hags: Mapping[str, Any]) -> AccessGroup:
    inputs: dict[str, str] = {}
    rules: list[Rule] = []
    for item in body:
        if item[0] == "INP":
            inputs[item[1]] = item[2]
            continue
        _, level, access_name, trap, conditions = item
        try:
            access = Access[access_name]
        except KeyError:
            raise ACFError(
                f"ASG({name}): RULE access must be NONE, READ or WRITE, got {access_name!r}"
            ) from None
        rule_uags: list[str] = []
        rule_hags: list[str] = []
        calc: str | None = None
        for kind, value in conditions or ():
            if kind == "UAG":
                rule_uags.extend(value)
            elif kind == "HAG":
                rule_hags.extend(value)
            else:
                calc = value
        for what, names, known in (("UAG", rule_uags, uags), ("HAG", rule_hags, hags)):
            missing = [n for n in names if n not in known]
            if missing:
                raise ACFError(f"ASG({name}): RULE names undefined {what}({', '.join(missing)})")
        expression, used = None, frozenset[str]()
        if calc is not None:
            try:
                expression, used = compile_calc(calc)
            except CalcError as exc:
                raise ACFError(f"ASG({name}): {exc}") from None
        rules.append(
            Rule(
                level,
                access,
                trap,
                tuple(rule_uags),
                tuple(rule_hags),
                calc,
                expression,
                used,
            )
        )
    assert set(inputs) <= set(INPUT_NAMES)
    return AccessGroup(name, inputs, tuple(rules))
