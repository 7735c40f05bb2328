"""RocksDB tables are rebuilt from the changelog at every start (streams.runtime.worker)."""

from __future__ import annotations

from pathlib import Path

from streams.runtime.worker import discard_local_tables


def _tables(tmp_path: Path) -> Path:
    tabledir = tmp_path / "v1" / "tables"
    (tabledir / "leads-0.db").mkdir(parents=True)
    (tabledir / "leads-0.db" / "000001.log").write_bytes(b"state ahead of the changelog")
    return tabledir


def test_rocksdb_tables_left_by_a_crash_are_removed(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    assert discard_local_tables("rocksdb://", tabledir) is True
    assert not tabledir.exists()


def test_memory_store_and_a_first_start_touch_nothing(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    assert discard_local_tables("memory://", tabledir) is False
    assert (tabledir / "leads-0.db" / "000001.log").exists()
    assert discard_local_tables("rocksdb://", tmp_path / "absent") is False
