"""The layout's dependency rule (README "Architecture"): imports point inwards.

Read from the source with :mod:`ast`, so a lazy import inside a function counts as well, except
where a rule says it is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streams

PACKAGE = Path(streams.__file__).parent

# Package -> the Leadstream packages it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "tiktok": {"domain", "errors", "http"},
    "meta": {"domain", "errors", "http"},
    "serde": {"domain", "settings", "errors"},
    "runtime": {"domain", "tiktok", "meta", "serde", "ops", "settings", "connection", "errors"},
    "ops": {"domain", "tiktok", "serde", "runtime", "settings", "connection", "errors"},
}
# The CLI's `demo`, `sandbox` and `registry` load the local stack on demand, inside the command.
LAZY: dict[str, set[str]] = {"ops": {"local"}}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "streams" and len(parts) > 1 else None


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """Every ``streams.*`` module a file imports, with its line."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("streams.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("streams.")]
    return found


def violations(package: str) -> list[str]:
    """Imports of ``package``'s files outside what :data:`ALLOWED` grants it."""
    allowed = ALLOWED[package] | {package}
    out = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        top = set(imports(path, top_level_only=True))
        for line, module in imports(path):
            target = _package_of(module)
            lazy = (line, module) not in top and target in LAZY.get(package, set())
            if target is not None and target not in allowed and not lazy:
                out.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if (PACKAGE / p).is_dir()))
def test_imports_point_inwards(package: str) -> None:
    assert violations(package) == []


def test_nothing_outside_local_imports_it_at_module_level() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "local" not in path.relative_to(PACKAGE).parts
        for line, module in imports(path, top_level_only=True)
        if _package_of(module) == "local"
    ]
    assert offenders == []


def test_the_rule_would_notice_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from streams.runtime.worker import Worker\n")
    assert imports(bad) == [(2, "streams.runtime.worker"), (2, "streams.runtime.worker.Worker")]
    assert imports(bad, top_level_only=True) == []
