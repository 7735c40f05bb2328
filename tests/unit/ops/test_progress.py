"""streams/ops/progress.py: a live count on a terminal only, and always the final count."""

from __future__ import annotations

import io

from streams.ops.progress import Progress, is_terminal


class FakeTTY(io.StringIO):
    """Standard error as an interactive terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """Monotonic seconds that advance by ``step`` on every reading."""

    def __init__(self, step: float) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_on_a_terminal_the_count_and_rate_are_redrawn_in_place() -> None:
    out = FakeTTY()
    progress = Progress(out, "produced", "records", interval=0.5, clock=Clock(0.3))

    for _ in range(4):
        progress.add()

    # Readings at 0.3 s steps from the start: a redraw once 0.5 s have passed since the last.
    assert out.getvalue() == "\rproduced 2 records (3/s)\rproduced 4 records (3/s)"
    progress.finish("produced 4 records to t")
    assert out.getvalue().endswith("\r" + " " * 24 + "\rproduced 4 records to t\n")


def test_a_shorter_line_overwrites_all_of_the_longer_one() -> None:
    out = FakeTTY()
    progress = Progress(out, "read", "dead letters", interval=0, clock=Clock(0.001))
    progress.add(1500)  # read 1,500 dead letters (750,000/s)
    progress.add(0)
    lines = out.getvalue().split("\r")[1:]
    assert len(lines[0]) == len(lines[1])


def test_elsewhere_only_the_final_count_is_written() -> None:
    out = io.StringIO()  # a pipe, a file, CI logs
    progress = Progress(out, "produced", "records", interval=0, clock=Clock(1.0))

    for _ in range(1000):
        progress.add()
    progress.finish("produced 1000 records")

    assert out.getvalue() == "produced 1000 records\n"
    assert progress.count == 1000


def test_clear_leaves_a_clean_line_for_a_message() -> None:
    out = FakeTTY()
    progress = Progress(out, "produced", "records", interval=0, clock=Clock(1.0))
    progress.add()
    progress.clear()
    out.write("line 7: bad\n")
    assert out.getvalue().endswith("\r" + " " * len("produced 1 records (1/s)") + "\rline 7: bad\n")
    progress.clear()  # nothing drawn since: nothing to erase
    assert out.getvalue().endswith("line 7: bad\n")


def test_finish_without_a_line_only_erases() -> None:
    out = FakeTTY()
    progress = Progress(out, "read", "dead letters", interval=0, clock=Clock(1.0))
    progress.finish()
    assert out.getvalue() == ""


def test_is_terminal() -> None:
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert is_terminal(FakeTTY())
    assert not is_terminal(io.StringIO())
    assert not is_terminal(closed)
    assert not is_terminal(object())  # type: ignore[arg-type]  # no isatty at all
