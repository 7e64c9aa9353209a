"""The arrows between warren's parts hold: import-linter checks the contracts in pyproject.toml.

The contracts (``[tool.importlinter]``) are the one statement of who may import whom
(docs/ARCHITECTURE.md explains them); this test runs ``lint-imports`` on them, so CI's one
command checks them. Two more checks keep the contracts honest: every top-level part of warren
has its place in the layers (a new package, say streams, fails here until it is given one), and
the linter really refuses the imports the contracts forbid (run on a copy of warren with one
bad import added).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "warren"

#: lint-imports as the Python running the tests has it (no reliance on PATH)
LINT_IMPORTS = [sys.executable, "-c",
                "from importlinter.cli import lint_imports_command; lint_imports_command()",
                "--no-cache", "--no-logo"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT_IMPORTS, cwd=cwd, capture_output=True, text=True, timeout=120)


def contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_every_contract_is_kept():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(contracts())} kept, 0 broken" in proc.stdout, proc.stdout


def test_every_top_level_part_has_a_layer():
    parts = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    placed = {name.strip().removeprefix("warren.")
              for layer in layers for name in layer.replace(":", "|").split("|")}
    assert parts - placed == set(), "give these a layer in pyproject.toml"
    assert placed - parts == set(), "these layers name nothing that exists"


#: (module that gets the import, the import, a contract that must refuse it)
VIOLATIONS = [
    ("broker/queue.py", "from ..amqp import framing", "layers"),
    ("amqp/channel.py", "from ..stomp import codec", "layers"),
    ("network/link.py", "from ..webconsole import site", "layers"),
    ("exchange/topic.py", "from ..broker import vhost", "acyclic"),
    ("stomp/subscriptions.py", "from . import session", "acyclic-inside"),
    ("model/message.py", "import pamqp", "core-protocol-free"),
    ("mqtt/codec.py", "from twisted.internet import defer", "codecs-sans-io"),
    ("ha/runner.py", "from ..broker import broker", "ha-is-handed-its-broker"),
    ("websocket/transport.py", "from ..stomp import codec", "websocket-carries-bytes"),
]


@pytest.mark.parametrize("module, line, contract", VIOLATIONS,
                         ids=[f"{m}:{c}" for m, _, c in VIOLATIONS])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(PACKAGE, tmp_path / "warren",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = tmp_path / "warren" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    name = next(c["name"] for c in contracts() if c["id"] == contract)
    assert f"{name} BROKEN" in " ".join(proc.stdout.split()), proc.stdout
