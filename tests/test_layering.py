"""The core stays protocol-neutral (DESIGN.md, STYLE P4): a static check of imports.

``warren.broker``, ``warren.exchange`` and ``warren.store`` must not import the front ends or
pamqp; front ends must not import each other. Read from the source with ``ast`` so the rule
holds for every module, imported by a test or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "warren"
FRONT_ENDS = ("warren.amqp", "warren.stomp", "warren.mqtt")
CORE = ("broker", "exchange", "store")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = ".".join(("warren",) + path.relative_to(ROOT).parent.parts)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module or "")
    return out


def modules(*parts: str):
    for part in parts:
        yield from sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("path", list(modules(*CORE)), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_protocol(path):
    bad = {m for m in imports_of(path)
           if m.startswith(FRONT_ENDS) or m.split(".")[0] == "pamqp"}
    assert not bad, f"{path} imports {sorted(bad)}"


@pytest.mark.parametrize("path", list(modules("amqp", "stomp", "mqtt")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_front_ends_do_not_import_each_other(path):
    own = "warren." + path.relative_to(ROOT).parts[0]
    bad = {m for m in imports_of(path) if m.startswith(FRONT_ENDS) and not m.startswith(own)}
    assert not bad, f"{path} imports {sorted(bad)}"


@pytest.mark.parametrize("path", list(modules("network")), ids=lambda p: str(p.relative_to(ROOT)))
def test_network_imports_no_front_end(path):
    """Bridges are AMQP *clients*: they speak pamqp themselves, not through the listener's
    modules (``warren.amqp.framing`` imports broker errors), nor through other front ends."""
    bad = {m for m in imports_of(path) if m.startswith(FRONT_ENDS + ("warren.webconsole",))}
    assert not bad, f"{path} imports {sorted(bad)}"
