"""Project-level checks: README's PV table matches what is served; lint and types are clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runengine_ioc.server import RunEngineIOC

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def readme_pv_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## The PVs", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| ([\w:]+) \|", table, re.MULTILINE)} - {"PV"}


def test_readme_pv_table_lists_exactly_the_served_pvs():
    ioc = RunEngineIOC(prefix="X:", registry=None, bridge=None)  # type: ignore[arg-type]
    # the fixed PVs (with no registry, no plan forms: those are documented by rule)
    served = {name.removeprefix("X:") for name in ioc.pvdb if "." not in name}
    assert readme_pv_names() == served


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"
    assert command in readme
    assert command in ci


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_code_is_lint_and_type_clean(command):
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
