"""wait_for (molecule/shared/flaskops_testinfra.py), the scenarios' poll:
on a clock of its own, when it polls and what it answers."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "shared"))
from flaskops_testinfra import wait_for  # noqa: E402  (the scenarios' conftest puts it on the path the same way)


@pytest.fixture()
def clock(monkeypatch):
    """time.monotonic and time.sleep on a clock that only sleeping (and a
    predicate that says it takes time) moves; a negative sleep raises, as
    the real one does."""
    now = [1000.0]

    def sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        now[0] += seconds
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", sleep)
    return now


def polls(clock, true_from: float = float("inf"), fails: bool = False,
          takes: float = 0.0, error: BaseException | None = None) -> tuple[list[float], object]:
    """A predicate that records when (seconds from the start) it is asked,
    and is true from true_from on; with fails, it raises as a failed
    command does (AssertionError), or error, until then; each poll takes
    `takes` s."""
    start, asked = clock[0], []

    def predicate():
        asked.append(round(clock[0] - start, 3))
        clock[0] += takes
        if asked[-1] >= true_from:
            return True
        if fails:
            raise error or AssertionError("not yet")
        return False
    return asked, predicate


def test_polls_start_half_a_second_apart_and_grow_to_two_seconds(clock):
    asked, predicate = polls(clock)
    assert wait_for(predicate, timeout=30) is False
    gaps = [round(b - a, 3) for a, b in zip(asked, asked[1:])]
    assert gaps[:4] == pytest.approx([0.5, 0.75, 1.125, 1.6875], abs=0.002)
    # Then 2 s apart, the last gap cut at the deadline, and one look there.
    assert set(gaps[4:-1]) == {2.0} and 0 < gaps[-1] <= 2.0
    assert asked[-1] == 30.0


def test_a_step_keeps_the_polls_that_far_apart(clock):
    # As many as fit before the deadline, none at it: a predicate that
    # compares a poll with the one before sees them a step apart.
    asked, predicate = polls(clock)
    assert wait_for(predicate, timeout=2, step=0.25) is False
    assert asked == [n * 0.25 for n in range(8)]
    # A step of 0 polls back to back (each poll here takes 0.1 s).
    asked, predicate = polls(clock, takes=0.1)
    assert wait_for(predicate, timeout=1, step=0) is False
    assert asked == pytest.approx([n * 0.1 for n in range(10)], abs=0.002)


def test_true_at_the_deadline_counts(clock):
    # With polls at 0, .5, 1.25, 2.375, the last gap is cut to end at 3 s.
    asked, predicate = polls(clock, true_from=3.0)
    assert wait_for(predicate, timeout=3) is True
    assert asked[-1] == 3.0


def test_a_poll_that_ends_past_the_deadline_is_followed_by_the_last_look(clock):
    # Polls of 0.7 s: at 0, 1.2, 2.65, then past the 3 s deadline.
    asked, predicate = polls(clock, takes=0.7)
    assert wait_for(predicate, timeout=3) is False
    assert asked == [0.0, 1.2, 2.65, 3.35]


def test_a_failing_command_counts_as_not_yet(clock):
    asked, predicate = polls(clock, true_from=5.0, fails=True)
    assert wait_for(predicate, timeout=30) is True
    assert asked[-1] >= 5.0 and len(asked) < 10
    asked, predicate = polls(clock, fails=True)
    assert wait_for(predicate, timeout=4) is False


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "refused"),
    ConnectionResetError(104, "reset"),
    TimeoutError("timed out"),
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
    http.client.RemoteDisconnected("closed"),
    subprocess.CalledProcessError(1, ["docker", "inspect", "gone"]),
    RuntimeError("ssh exited 255"),
], ids=lambda e: type(e).__name__)
def test_what_a_restart_makes_a_poll_meet_counts_as_not_yet(clock, error):
    # A service or host restarting: the request refused, timed out or cut
    # short, a `docker` command failing, ssh itself failing (testinfra).
    # Polls at 0 and 0.5 s meet it; the one at 1.25 s is answered.
    asked, predicate = polls(clock, true_from=1.0, fails=True, error=error)
    assert wait_for(predicate, timeout=30) is True
    assert asked == [0.0, 0.5, 1.25]


@pytest.mark.parametrize("error", [
    KeyError("missing"),
    FileNotFoundError(2, "No such file or directory"),
    NotImplementedError("not written yet"),
], ids=lambda e: type(e).__name__)
def test_a_mistake_of_the_predicate_is_raised_at_once(clock, error):
    # A key it misspells, a local file it names wrongly, a subclass of
    # RuntimeError that is not ssh's.
    asked, predicate = polls(clock, fails=True, error=error)
    with pytest.raises(type(error)):
        wait_for(predicate, timeout=30)
    assert asked == [0.0]
