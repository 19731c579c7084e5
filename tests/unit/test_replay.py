"""File replay: any order gives the sorted file's result, the end of input settles, a wrong
clock is refused as ``future`` without touching anyone else."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

import cxstream.replay as replay_module
from cxstream.engine.alerts import rfc3339
from cxstream.engine.events import Event
from cxstream.replay import replay_file
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from cxstream.sim.simulator import simulate
from tests.factories import T0, at, login, reopened, resolved, ticket

NOW = T0 + 400 * 86_400.0  # the replays' wall clock: after every event here


def write(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in events))
    return path


def canon(result: object) -> tuple[list[bytes], list[bytes]]:
    alerts = sorted(orjson.dumps(a.to_dict(), option=orjson.OPT_SORT_KEYS)
                    for a in result.alerts)  # type: ignore[attr-defined]
    metrics = sorted(orjson.dumps(u.to_dict(), option=orjson.OPT_SORT_KEYS)
                     for u in result.metrics.latest())  # type: ignore[attr-defined]
    return alerts, metrics


@pytest.fixture(scope="module")
def simulated() -> list[Event]:
    return list(simulate(60, 40, seed=3, start=T0))


def test_a_file_sorted_by_day_but_not_within_it_gives_the_sorted_files_result(
    tmp_path: Path, simulated: list[Event]
) -> None:
    settings = Settings(topic_partitions=2)
    by_day: dict[int, list[Event]] = {}
    for e in simulated:
        by_day.setdefault(int(e.occurred_at // 86_400), []).append(e)
    shuffled: list[Event] = []
    rng = random.Random(7)
    for day in sorted(by_day):
        rows = by_day[day][:]
        rng.shuffle(rows)
        shuffled += rows

    sorted_run = replay_file(settings, write(tmp_path / "s.jsonl", simulated), now=NOW)
    shuffled_run = replay_file(settings, write(tmp_path / "u.jsonl", shuffled), now=NOW)

    assert shuffled_run.late == sorted_run.late == 0
    assert shuffled_run.reordered and not sorted_run.reordered
    assert shuffled_run.applied == sorted_run.applied == len(simulated)
    assert canon(shuffled_run) == canon(sorted_run)
    assert sorted_run.alerts


def test_a_big_unsorted_file_is_sorted_in_runs_on_disk_to_the_same_result(
    tmp_path: Path, simulated: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(topic_partitions=2)
    reversed_file = write(tmp_path / "r.jsonl", simulated[::-1])
    in_memory = replay_file(settings, reversed_file, now=NOW)

    monkeypatch.setattr(replay_module, "SORT_CHUNK", 1_000)  # a dozen runs on disk
    on_disk = replay_file(settings, reversed_file, now=NOW)

    assert on_disk.reordered and on_disk.late == 0
    assert canon(on_disk) == canon(in_memory)


def test_in_file_order_a_line_behind_the_stream_is_late_and_dead_lettered(
    tmp_path: Path
) -> None:
    settings = Settings(topic_partitions=1)
    path = write(tmp_path / "late.jsonl",
                 [login("a", 0, 9), login("a", 5, 9), login("b", 1, 9)])
    dead: list[bytes] = []

    as_published = replay_file(settings, path, now=NOW, as_published=True, dead=dead)
    in_time_order = replay_file(settings, path, now=NOW)

    assert as_published.late == 1 and in_time_order.late == 0
    assert [orjson.loads(d)["code"] for d in dead] == ["late"]


def test_the_end_of_input_settles_up_to_the_last_event_time_and_not_beyond(
    tmp_path: Path
) -> None:
    # A ticket reopened in the last minutes of the file: inside the allowed lateness,
    # a live worker waits; replay knows nothing more will come.
    settings = Settings(topic_partitions=1,
                        profile={"alert_kinds": ["support_friction", "inactivity"]})
    events = [login("c", 0, 8), ticket("c", 0, 9, ticket_id="t1"),
              resolved("c", 0, 10, ticket_id="t1"), reopened("c", 0, 10, 2, ticket_id="t1")]
    path = write(tmp_path / "tail.jsonl", events)

    live_like = replay_file(settings, path, now=NOW, settle=False)
    settled = replay_file(settings, path, now=NOW)

    assert live_like.alerts == []
    assert [(a.kind, a.state, a.decided_at, [r.code for r in a.reasons])
            for a in settled.alerts] == [
        ("support_friction", "raised", at(0, 10, 2), ["ticket_reopened"]),
    ]
    assert settled.settled_to == at(0, 10, 2)
    assert settled.settled_alerts == 1  # no inactivity: nothing after the last event is invented


def test_a_far_future_line_is_refused_and_changes_no_other_customers_alerts(
    tmp_path: Path, simulated: list[Event]
) -> None:
    settings = Settings(topic_partitions=2)
    bad = Event("bad-clock", "cus000001", "login", 4_100_000_000.0)  # 2099-12-05
    middle = len(simulated) // 2
    dead: list[bytes] = []

    clean = replay_file(settings, write(tmp_path / "c.jsonl", simulated), now=NOW)
    poisoned = replay_file(
        settings, write(tmp_path / "p.jsonl", [*simulated[:middle], bad, *simulated[middle:]]),
        now=NOW, dead=dead)

    assert poisoned.future == 1 and poisoned.late == 0
    assert [orjson.loads(d)["code"] for d in dead] == ["future"]
    assert canon(poisoned) == canon(clean)


def test_now_moves_the_future_line(tmp_path: Path) -> None:
    settings = Settings(topic_partitions=1)
    path = write(tmp_path / "f.jsonl", [login("a", 0, 9), login("a", 1, 9)])

    before = replay_file(settings, path, now=at(0, 12))
    after = replay_file(settings, path, now=at(1, 12))

    assert (before.future, before.applied) == (1, 1)
    assert (after.future, after.applied) == (0, 2)


def test_the_replay_command_says_what_it_sorted_and_settled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxstream.cli.main import main

    path = write(tmp_path / "cmd.jsonl", [login("a", 1, 9), login("b", 0, 9)])

    assert main(["replay", str(path), "--now", rfc3339(NOW), "--quiet"]) == 0

    err = capsys.readouterr().err
    assert "sorted by event time (the file was not in order)" in err
    assert f"settled up to the last event time {rfc3339(at(1, 9))}" in err
