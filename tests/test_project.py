"""Project-level checks: README's PV table matches what is served; lint and types are clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runengine_ioc.ca.catalogue import catalogue
from runengine_ioc.ca.server import RunEngineIOC

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def readme_pv_rows() -> dict[str, tuple[str, bool]]:
    """README's PV table: name -> (record type, writable)."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## The PVs", 1)[1].split("\n## ", 1)[0]
    rows = re.finditer(r"^\| ([\w:]+) \| (\w+)[^|]* \| (yes)? *\|", table, re.MULTILINE)
    return {m.group(1): (m.group(2), m.group(3) == "yes") for m in rows if m.group(1) != "PV"}


def test_readme_pv_table_lists_exactly_the_served_pvs():
    ioc = RunEngineIOC(prefix="X:", registry=None, bridge=None)  # type: ignore[arg-type]
    # no registry: no plan forms (<plan>:<parameter>, documented by rule), just the fixed PVs
    served = {name.removeprefix("X:") for name in ioc.pvdb if "." not in name}
    assert set(readme_pv_rows()) == served


def test_readme_pv_table_matches_the_catalogue_in_record_type_and_writability():
    listed = {entry.name: (entry.record, entry.writable) for entry in catalogue(RunEngineIOC)}
    assert readme_pv_rows() == listed


def test_the_catalogue_lists_every_served_pv_once():
    ioc = RunEngineIOC(prefix="X:", registry=None, bridge=None)  # type: ignore[arg-type]
    names = [entry.name for entry in catalogue(RunEngineIOC)]
    assert len(names) == len(set(names))
    assert {f"X:{name}" for name in names} == {name for name in ioc.pvdb if "." not in name}


def test_imports_keep_to_the_layers():
    """The import-linter contracts in pyproject.toml (layers, no caproto in engine/data...)."""
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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


def test_a_users_own_plans_and_ioc_modules_neither_shadow_nor_are_shadowed(tmp_path):
    for name in ("plans", "ioc"):
        (tmp_path / f"{name}.py").write_text(f"NAME = 'users own {name}'\n")
    probe = (
        "import plans, ioc, runengine_ioc.plans as lib, runengine_ioc.ca.server;"
        "assert plans.NAME.endswith('plans') and ioc.NAME.endswith('ioc');"
        "assert 'scan' in lib.__all__; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
