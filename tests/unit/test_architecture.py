"""The house rules: layers import one way (import-linter contracts in pyproject.toml), and only config.py reads
the environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "producer_api"


def test_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _environment_reads(source: str) -> list[int]:
    """Lines of source that touch the process environment: os.environ, os.getenv, or either imported from os."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                alias.name in ("environ", "getenv", "environb", "getenvb") for alias in node.names):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "getenvb")
              and isinstance(node.value, ast.Name) and node.value.id == "os"):
            lines.append(node.lineno)
    return lines


def _writes_only(source: str, line: int) -> bool:
    """Whether the os.environ on this line is only the target of an assignment (the server runtime sets it)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and node.lineno == line:
            return all(isinstance(target, ast.Subscript) for target in node.targets) and not any(
                isinstance(inner, ast.Attribute) and inner.attr == "environ" for inner in ast.walk(node.value))
    return False


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(REPO)))
def test_only_config_reads_the_environment(path):
    source = path.read_text()
    reads = [line for line in _environment_reads(source) if not _writes_only(source, line)]
    if path == PACKAGE / "config.py":
        assert reads, "config.py is where the environment is read"
    else:
        assert reads == [], f"{path.relative_to(REPO)} reads the environment at lines {reads}: go through Settings"


def test_the_environment_check_sees_a_read():
    assert _environment_reads("import os\nvalue = os.environ.get('X')\n") == [2]
    assert _environment_reads("import os\nvalue = os.getenv('X')\n") == [2]
    assert _environment_reads("from os import environ\n") == [1]
    assert _environment_reads("value = request.environ['wsgi.input']\n") == []
    source = "import os\nos.environ['X'] = 'y'\n"
    assert all(_writes_only(source, line) for line in _environment_reads(source))
