"""The benchmark report's targets block (issue 15): every row, its verdict, the broker named."""

from __future__ import annotations

from benchmarks import report

BROKER = "Apache Kafka 4.1.1 (KRaft, 1 node)"


def summary(**medians: float) -> dict[str, object]:
    runs = {key: [value] for key, value in medians.items()}
    return report.summarise(runs)


def test_every_target_row_is_printed_with_its_verdict_and_the_broker_named() -> None:
    lines = report.target_lines(
        summary(
            e2e=4_500,
            noop=10_000,
            records_per_lead=2.6,
            latency_p99=120,
            requests_per_1000=1.3,
            state_per_lead=900,
            scale_ratio=1.4,
        ),
        BROKER,
        1000,
    )
    assert lines[0] == f"targets (issue 15), measured on {BROKER}:"
    rows = {line.split("   ")[0].strip(): line for line in lines[1:]}
    assert len(rows) == len(report.TARGETS) == 6
    verdicts = {label: line.rsplit(" ", 1)[1] for label, line in rows.items()}
    assert verdicts == {
        "e2e leads/s / no-op Faust agent rec/s": "ok",  # 45.0 %
        "records consumed through Faust per lead": "MISSED",
        "latency status change -> Events API, p99 at 1,000/s": "ok",
        "HTTP requests per 1,000 events at saturation": "MISSED",
        "lead state per lead (all tables)": "ok",
        "two workers on 4 partitions / one worker": "reported",
    }
    assert "45.0 %" in rows["e2e leads/s / no-op Faust agent rec/s"]
    assert "1.40x" in rows["two workers on 4 partitions / one worker"]


def test_a_row_not_measured_says_so_instead_of_passing() -> None:
    lines = report.target_lines(summary(latency_p99=151), BROKER, 1000)
    assert lines[3].endswith("MISSED")
    assert sum(line.endswith("not measured") for line in lines) == 5


def test_the_ceiling_is_the_no_op_cpu_per_record_over_the_own_cpu_per_lead_and_is_printed() -> None:
    runs = {"noop_cpu": [130.0, 124.0, 152.0], "own": [487.0, 634.0, 473.0]}
    result = report.summarise(runs)
    assert result["ratios"][report.CEILING] == 130.0 / 487.0
    text = report.table(runs, result, "title", [])
    [line] = [ln for ln in text.splitlines() if "no-op CPU per record / own CPU per lead" in ln]
    assert line.startswith("8 ")
    assert line.endswith("26.7 %")
    assert "us" in next(ln for ln in text.splitlines() if "no Faust, no Kafka" in ln)


def test_no_ceiling_without_both_figures() -> None:
    result = report.summarise({"own": [500.0]})
    assert result["ratios"][report.CEILING] is None
    assert "ceiling" not in report.table({"own": [500.0]}, result, "title", [])
