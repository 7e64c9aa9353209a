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
FRONT_ENDS = ("warren.amqp", "warren.stomp", "warren.mqtt", "warren.streamproto")
CORE = ("broker", "exchange", "store", "stream")


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


@pytest.mark.parametrize("path", list(modules("amqp", "stomp", "mqtt", "streamproto")),
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


def module_path(name: str) -> Path | None:
    """The file of a warren module name (a package's ``__init__.py``), None outside warren."""
    parts = name.split(".")
    if parts[0] != "warren":
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_reached(path: Path) -> set[str]:
    """Every module name imported by ``path`` and, transitively, by the warren modules it
    imports (and their packages' ``__init__``): what ``import`` of it really loads."""
    seen: set[Path] = set()
    names: set[str] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports_of(current):
            names.add(name)
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_path(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return names


#: the sans-I/O codecs (STYLE P1): no Twisted, no core; another engineer's network link and
#: the fuzzers feed them bytes with neither around
CODECS = ("amqp/framing.py", "stomp/codec.py", "mqtt/codec.py")


@pytest.mark.parametrize("codec", CODECS)
def test_codecs_import_neither_the_core_nor_twisted(codec):
    reached = imports_reached(ROOT / codec)
    bad = {m for m in reached
           if m.startswith(tuple("warren." + part for part in CORE))
           or m.split(".")[0] == "twisted"}
    assert not bad, f"{codec} imports {sorted(bad)}"
