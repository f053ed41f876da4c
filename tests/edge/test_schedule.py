"""Local schedule timing and session numbering, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

from camfleet.edge.schedule import Schedule
from camfleet.edge.sessions import SessionNumbers
from camfleet.edge.state import AgentState


def test_interval_slots_do_not_drift_and_skip_when_far_behind():
    s = Schedule(interval_s=10)
    assert s.next_due(None, 1000.0) == 1000.0
    assert s.next_due(1000.0, 1003.0) == 1010.0  # anchored on the slot, not on "now"
    assert s.next_due(1010.0, 1019.9) == 1020.0  # late but within a slot: still that slot
    assert s.next_due(1020.0, 1075.0) == 1070.0  # fell behind 5 slots: skip to the latest
    assert not Schedule().active and Schedule().next_due(None, 5.0) is None


def test_cron_next_slot_is_utc():
    s = Schedule(cron="30 12 * * *")
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()
    due = s.next_due(None, now)
    assert due is not None
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 11, 21, 12, 30, tzinfo=UTC)
    assert s.next_due(due, due) == due + 86400


def test_session_numbers_persist_and_never_repeat(tmp_path):
    state = AgentState(tmp_path)
    a = SessionNumbers(state)
    start = a.frame_session
    assert a.next_frame() == (start, 1)  # captured before the first connect
    first = a.for_connect()
    assert first == start + 1  # the start-up number was used by a frame
    assert a.for_connect() == first  # a failed attempt does not burn another number
    a.connected(first)
    assert a.next_frame() == (first, 1)
    a.disconnected()
    assert a.next_frame() == (first, 2)  # offline frames continue the last session
    second = a.for_connect()
    assert second == first + 1
    b = SessionNumbers(AgentState(tmp_path))  # a restart (or SIGKILL) continues upwards
    assert b.frame_session == second + 1 and state.last_session() == second + 1


def test_daily_times_pick_the_next_slot_and_roll_over_midnight():
    s = Schedule(daily_times_s=(3600, 43200))  # 01:00 and 12:00 UTC
    day = datetime(2026, 11, 21, tzinfo=UTC).timestamp()
    assert s.active
    assert s.next_due(None, day + 100) == day + 3600
    assert s.next_due(day + 3600, day + 3601) == day + 43200
    assert s.next_due(day + 43200, day + 43201) == day + 86400 + 3600
    assert s.next_due(None, day + 3600) == day + 3600  # exactly on a slot: that slot


def test_sessions_stay_above_a_spool_that_outlived_its_state(tmp_path, shared_mosquitto):
    from camfleet.edge.agent import EdgeAgent
    from camfleet.proto import codec
    from tests.edge.conftest import agent_config

    cfg = agent_config(tmp_path, shared_mosquitto, "stale-state")
    agent = EdgeAgent(cfg)
    agent.spool.put(codec.make_frame(b"x", session=41, seq=1))
    (cfg.agent.state_dir / "session").unlink(missing_ok=True)
    agent.start()
    try:
        assert agent.sessions.frame_session == 42
        assert agent.capture().session == 42
    finally:
        agent.stop()


def test_two_agents_cannot_share_a_state_dir(tmp_path, shared_mosquitto):
    import pytest

    from camfleet.edge.agent import EdgeAgent
    from camfleet.errors import UserError
    from tests.edge.conftest import agent_config

    cfg = agent_config(tmp_path, shared_mosquitto, "twin")
    first = EdgeAgent(cfg)
    with pytest.raises(UserError, match="another edge agent is running with state dir"):
        EdgeAgent(cfg)
    first.close()
    EdgeAgent(cfg).close()  # free again
