"""The worker freezes its startup heap before Faust runs (no broker: Faust's Worker is faked)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streams.runtime import worker as worker_module


def test_run_freezes_what_was_built_before_faust_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, int] = {}

    class FakeFaustWorker:
        def __init__(self, app: Any, **_: Any) -> None:
            pass

        def execute_from_commandline(self) -> None:
            seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(worker_module.faust, "Worker", FakeFaustWorker)
    fake = SimpleNamespace(
        settings=SimpleNamespace(store="memory://"),
        app=SimpleNamespace(conf=SimpleNamespace(tabledir=str(tmp_path / "tables"))),
    )
    gc.unfreeze()
    try:
        worker_module.Worker.run(fake)  # type: ignore[arg-type]
    finally:
        gc.unfreeze()
    # Everything alive when the worker starts (this test's modules included) is frozen.
    assert seen["frozen"] > 10_000


def test_freezing_collects_garbage_first() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    garbage = Cycle()  # a cycle: only the collector frees it
    ref = weakref.ref(garbage)
    del garbage
    gc.unfreeze()
    try:
        frozen = worker_module.freeze_startup_heap()
        # Not compared with a later gc.get_freeze_count(): a thread of an earlier test that exits
        # meanwhile frees objects that were just frozen, and the count drops.
        assert frozen > 0
        assert ref() is None  # freed, not frozen for the worker's lifetime
    finally:
        gc.unfreeze()
