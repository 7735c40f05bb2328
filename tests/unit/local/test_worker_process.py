"""How ``LocalStack`` starts a worker process (no broker: a stand-in package answers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.local.stack import WorkerProcess

REPO = Path(__file__).resolve().parents[3]


def test_a_worker_imports_the_code_on_its_pythonpath_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A benchmark compares two checkouts by the worker's PYTHONPATH. Started in the caller's
    # directory (here the repository, as `make bench` runs), `python -m streams` imported that
    # directory's streams/ first and both sides ran the same code.
    other = tmp_path / "other-checkout" / "streams"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    marker = tmp_path / "imported-from"
    (other / "__main__.py").write_text(
        f"import pathlib, streams\npathlib.Path({str(marker)!r}).write_text(streams.__file__)\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(REPO)
    worker = WorkerProcess({"PYTHONPATH": str(other.parent)}, workdir / "worker.log", 0)
    worker.start()
    assert worker.proc is not None
    try:
        worker.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
    assert marker.read_text() == str(other / "__init__.py")
