"""``python -m benchmarks.own_work``: Leadstream's own CPU per lead, no Faust, no Kafka."""

from __future__ import annotations

import json

import pytest

from benchmarks import own_work


def test_it_runs_the_lead_and_delivery_code_on_every_lead_and_prints_the_ceiling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 1,200 leads: three lead batches of each kind, a full delivery batch, then a part-full one
    # (_one_run raises unless every lead made one conversion and every conversion was sent).
    assert own_work.main(["--leads", "1200", "--repeat", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["leads"] == 1200
    [run] = out["runs"]
    stages = ("form_us", "status_change_us", "delivery_us")
    assert all(run[stage] > 0 for stage in stages)
    assert run["total_us"] == pytest.approx(sum(run[stage] for stage in stages))
    assert out["ceiling_leads_per_core_s"] == pytest.approx(1e6 / out["total_us"])


def test_a_size_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        own_work.main(["--leads", "0"])
    assert exited.value.code == 2
    assert "--leads and --repeat must be at least 1" in capsys.readouterr().err
