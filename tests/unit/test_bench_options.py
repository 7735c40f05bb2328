"""The benchmark harness's options (issue 15): the latency run's settings and their bounds."""

from __future__ import annotations

import pytest

from benchmarks import runner


def test_the_latency_run_sends_without_a_window_after_a_one_second_warm_up_by_default() -> None:
    cfg = runner.parse_args([])
    assert cfg.latency_linger == 0.0
    assert cfg.latency_warmup == 1.0
    assert cfg.e2e_linger == 1.0  # saturation keeps the product's default linger


def test_the_warm_up_can_be_left_out_to_measure_a_cold_worker() -> None:
    assert runner.parse_args(["--latency-warmup", "0"]).latency_warmup == 0.0


@pytest.mark.parametrize("option", ["--latency-warmup", "--latency-linger", "--e2e-linger"])
def test_a_negative_time_is_refused_with_the_option_named(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        runner.parse_args([option, "-1"])
    assert exited.value.code == 2
    assert f"{option} must be 0 or more" in capsys.readouterr().err


def test_a_worker_setting_or_another_checkout_can_be_given_to_the_workers() -> None:
    cfg = runner.parse_args(
        ["--worker-env", "LEADSTREAM_DELIVERY_LINGER=0.5", "--worker-env", "PYTHONPATH=/src/x"]
    )
    assert dict(cfg.worker_env) == {"LEADSTREAM_DELIVERY_LINGER": "0.5", "PYTHONPATH": "/src/x"}


@pytest.mark.parametrize("item", ["HOME=/tmp", "LEADSTREAM_DELIVERY_LINGER"])
def test_any_other_worker_variable_is_refused(
    item: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        runner.parse_args(["--worker-env", item])
    assert exited.value.code == 2
    assert f"--worker-env wants LEADSTREAM_NAME=VALUE or PYTHONPATH=DIR, not {item!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(("first", "late"), [(0.7, False), (9.0, True)])
def test_the_notes_call_the_first_delivery_late_only_when_it_was(first: float, late: bool) -> None:
    got = runner.Collected()
    got.details["e2e"] = [{"first_accepted_after_ready_s": first, "ready_to_all_s": 42.0}]
    e2e_note = runner._notes(got)[0]
    assert f"first accepted event {first:.1f}s after ready of 42.0s".lower() in e2e_note.lower()
    assert ("starts late" in e2e_note) is late


def test_the_own_work_runs_by_default_on_the_e2e_leads_up_to_ten_thousand() -> None:
    assert "own" in runner.parse_args([]).only
    assert runner.own_leads(runner.parse_args([])) == 10_000
    smoke = runner.parse_args(["--smoke"])
    assert runner.own_leads(smoke) == min(smoke.leads, 10_000)
    assert runner.own_leads(runner.parse_args(["--leads", "300"])) == 300
