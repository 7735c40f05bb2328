"""The report's renderers: aligned text, stable JSON, one self-contained HTML page."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streams.ops.cli import main
from streams.ops.report.figures import History, Report
from streams.ops.report.html import CHARTS, charts, render_html
from streams.ops.report.model import aggregate
from streams.ops.report.render import duration, render_text, to_json
from streams.ops.report.run import time_range
from tests.unit.ops.test_report_model import RULES, T, known_history


@pytest.fixture
def report() -> Report:
    return aggregate(known_history(), RULES, T - timedelta(days=7), T, {"leads.f": 7})


class _Page(HTMLParser):
    """Collects tags, the attributes that would fetch something, and unclosed elements."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr", "col", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.fetching: list[tuple[str, str, str]] = []
        self.open: list[str] = []
        self.svg_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset") and value:
                self.fetching.append((tag, name, value))
            if name == "style" and value and "url(" in value:
                self.fetching.append((tag, name, value))
        if tag == "svg":
            self.svg_ids.append(dict(attrs).get("id") or "")
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_html_has_an_svg_per_chart_and_parses(report: Report) -> None:
    page = render_html(report)
    parsed = _parse(page)
    assert parsed.open == [], "every element is closed"
    assert page.startswith("<!DOCTYPE html>")
    assert sorted(parsed.svg_ids) == sorted(f"chart-{c}" for c in CHARTS)
    assert len(CHARTS) == 7


def test_html_fetches_nothing(report: Report) -> None:
    page = render_html(report)
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags
    assert "img" not in parsed.tags
    assert parsed.fetching == []
    assert not re.search(r"https?://", page), "no URL at all in the page"
    assert "@import" not in page
    assert "url(" not in page


def test_html_escapes_record_text(report: Report) -> None:
    h = known_history()
    evil = {**h.dead_letters[0], "message": '<img src="http://x/a.png">', "reason": "<b>r"}
    r = aggregate(History(dead_letters=[evil]), RULES, T, T)
    page = render_html(r)
    assert "<img" not in page
    assert "&lt;img src=&quot;http://x/a.png&quot;&gt;" in page
    assert "<b>r" not in page


def test_charts_draw_the_figures(report: Report) -> None:
    svg = charts(report)
    # Funnel: bars for web forms 4, qualified 2 (50.0%), won 1; dead letters: 2 days.
    assert ">4</text>" in svg["funnel"]
    assert "2 (50.0%)" in svg["funnel"]
    assert svg["dead_letters_per_day"].count("<rect") == 3 + 3  # 3 stacked pieces + 3 legend keys
    assert "11-18" in svg["dead_letters_per_day"]
    assert "external_id (weak)" in svg["coverage"]
    assert "25.0%" in svg["coverage"]
    # Histogram of the web route: one lead under an hour, one between 1 and 6 hours.
    assert svg["form_to_qualified_web"].count("<rect") == 2 + 1


def test_empty_report_still_draws_every_chart() -> None:
    r = aggregate(History(), RULES, T, T)
    svg = charts(r)
    assert sorted(svg) == sorted(CHARTS)
    assert all("no data in range" in s for s in svg.values())


def test_json_is_plain_and_stable(report: Report) -> None:
    data = json.loads(json.dumps(to_json(report)))
    assert list(data) == [
        "since",
        "until",
        "records_read",
        "funnel",
        "unmatched_status_changes",
        "unmatched_by_event",
        "events",
        "status_to_accepted",
        "form_to_qualified",
        "coverage",
        "delivery",
        "dead_letters",
        "notes",
    ]
    assert data["since"] == "2026-11-13T12:00:00Z"
    assert data["funnel"][0] == {
        "route": "web",
        "forms": 4,
        "qualified": 2,
        "won": 1,
        "qualified_rate": 0.5,
        "won_rate": 0.5,
        "form_to_won_rate": 0.25,
    }
    assert data["dead_letters"]["by_day"][0] == {
        "day": "2026-11-18",
        "by_reason": {"missing_field": 2},
    }
    assert data["status_to_accepted"] == {"count": 3, "p50": 120.0, "p95": 600.0, "max": 600.0}


def test_text_summary(report: Report) -> None:
    text = render_text(report)
    assert text.startswith("Lead-quality report 2026-11-13 12:00:00Z .. 2026-11-20 12:00:00Z\n")
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("route  forms"))
    web = next(line for line in lines if line.strip().startswith("web ") and "%" in line)
    assert header.index("forms") + len("forms") == web.index("4") + 1, "numbers right-aligned"
    assert "status changes without a form in range: 2" in text
    assert "weakest: external_id (25.0%)" in text
    assert "rejected 2 (40002 1, no_answer 1)" in text
    assert "withheld by consent (derived): consent_denied 2, consent_unknown 1" in text
    assert "2026-11-18  missing_field 2" in text
    assert "change->accepted" in text
    assert "2.0m / 10.0m / 10.0m" in text  # status change to accepted, all events


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (30.0, "30s"),
        (2.5, "2.5s"),
        (600.0, "10.0m"),
        (5400.0, "1.5h"),
        (172800.0, "2.0d"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_default_range_is_the_last_seven_days() -> None:
    assert time_range(None, None, T) == (T - timedelta(days=7), T)
    assert time_range("36h", "PT12H", T) == (T - timedelta(hours=36), T - timedelta(hours=12))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "--since/--until: 'soon' is neither"),
        (["--since", "1d", "--until", "2d"], "must be before --until"),
        (["--html", "/no/such/folder/r.html"], "--html: folder /no/such/folder does not exist"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("leadstream: error: ")
    assert message in err


def test_unreachable_kafka_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("LEADSTREAM_KAFKA_CONNECT_TIMEOUT", "2")
    assert main(["report"]) == 2  # the connection check every Kafka command runs first
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("leadstream: error: ")
    assert "127.0.0.1:1" in err


def test_a_read_that_fails_midway_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.ops.report import read, run
    from streams.settings import load_settings

    def broken(*args: object, **kwargs: object) -> None:
        text = "t: no records for 30s from partitions 0"
        raise read.ReadError(text)

    monkeypatch.setattr(run, "read_history", broken)
    out, err = io.StringIO(), io.StringIO()
    code = run.run_report(
        load_settings(), since=None, until=None, as_json=False, html=None, out=out, err=err
    )
    assert code == 1
    assert err.getvalue() == "leadstream: error: t: no records for 30s from partitions 0\n"
    assert out.getvalue() == ""


def test_writes_html_and_prints_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, report: Report
) -> None:
    from streams.ops.report import run

    monkeypatch.setattr(run, "read_history", lambda *a, **k: (known_history(), {"x": 1}))
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "r.html"
    from streams.settings import load_settings

    code = run.run_report(
        load_settings(), since=None, until=None, as_json=False, html=str(target), out=out, err=err
    )
    assert code == 0
    assert target.read_text(encoding="utf-8").count("<svg") == len(CHARTS)
    assert out.getvalue().endswith(f"wrote {target}\n")


def test_progress_rewrites_one_line_per_topic() -> None:
    from streams.ops.report.read import _Progress

    buf = io.StringIO()
    progress = _Progress(buf)
    progress.start("leads")
    progress.tick()
    progress.tick()
    progress.done()
    assert buf.getvalue().startswith("\rreading leads: 0 records")
    assert buf.getvalue().endswith("\rreading leads: 2 records\n")
    silent = _Progress(None)
    silent.start("leads")
    silent.tick()
    silent.done()  # no terminal: nothing written, nothing raised


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.ops.report import run
    from streams.settings import load_settings

    seen: list[object] = []

    def fake_read(*args: object, progress_out: object = None) -> tuple[History, dict[str, int]]:
        seen.append(progress_out)
        return History(), {}

    monkeypatch.setattr(run, "read_history", fake_read)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for err in (tty, pipe):
        code = run.run_report(
            load_settings(),
            since=None,
            until=None,
            as_json=True,
            html=None,
            out=io.StringIO(),
            err=err,
        )
        assert code == 0
    assert seen == [tty, None]


def _run(**env: str) -> int:
    from streams.ops.report import run
    from streams.settings import load_settings

    settings = load_settings(**env)
    return run.run_report(
        settings, since=None, until=None, as_json=True, html=None, out=io.StringIO()
    )


def test_a_malformed_registry_url_is_a_configuration_error() -> None:
    from streams.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        _run(schema_registry_url="registry.local")
    assert str(caught.value) == "LEADSTREAM_SCHEMA_REGISTRY_URL: Invalid url registry.local"


def test_a_kafka_setting_librdkafka_refuses_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.errors import ConfigError
    from streams.ops.report import read

    monkeypatch.setattr(
        read, "_consumer_config", lambda s: {"bootstrap.servers": "x", "group.id": "g", "nope": 1}
    )
    with pytest.raises(ConfigError, match=r"^Kafka client settings: .*nope"):
        _run()
