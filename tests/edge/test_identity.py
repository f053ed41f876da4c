"""A wiped edge agent (state dir and spool gone) loses nothing at a real controller, and a
receipt for another incarnation deletes nothing, an oversized one is refused (issue 9)."""

from __future__ import annotations

import shutil

from camfleet.proto import codec, topics
from camfleet.proto.v1 import frame_pb2
from camfleet.testing.controller_process import Waiter, frame_rows, start_controller
from tests.edge.conftest import agent_config


def test_a_wiped_agent_loses_nothing(mosquitto, tmp_path, device_id, run_agent):  # type: ignore[no-untyped-def]
    ctl = start_controller(mosquitto.url, tmp_path / "data")
    try:
        waiter = Waiter(ctl)
        cfg = agent_config(tmp_path, mosquitto, device_id)
        running = run_agent(cfg)
        agent = running.agent
        assert agent.online.wait(60)
        agent.capture()
        agent.capture()
        assert agent.wait_until(lambda: agent.spool.depth == 0, 60)
        first = agent.incarnation
        running.stop()
        shutil.rmtree(tmp_path / device_id)  # state dir and spool wiped

        running = run_agent(cfg)
        agent = running.agent
        assert agent.online.wait(60)
        assert agent.incarnation != first
        agent.capture()
        agent.capture()
        assert agent.wait_until(lambda: agent.spool.depth == 0, 60)
        assert waiter.wait_for(lambda: len(frame_rows(tmp_path / "data", device_id)) == 4, 20)
        rows = frame_rows(tmp_path / "data", device_id)
        assert sorted((r["session"], r["seq"]) for r in rows) == [(1, 1), (1, 1), (1, 2), (1, 2)]
        assert {r["incarnation"] for r in rows} == {first.hex(), agent.incarnation.hex()}
        assert ctl.metrics.total("frames_duplicate_total") == 0
    finally:
        ctl.stop()


def test_receipts_for_another_incarnation_or_oversized_delete_nothing(  # type: ignore[no-untyped-def]
    mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(mosquitto, device_id, receipts=False)
    running = run_agent(agent_config(tmp_path, mosquitto, device_id))
    agent = running.agent
    assert agent.online.wait(60)
    for _ in range(3):
        agent.capture()
    rx.wait_for(lambda g: len(g.frames) == 3, what="3 frames")
    assert agent.spool.depth == 3
    received = agent.counters["bad_messages"]
    wrong = frame_pb2.Receipt(
        stored=[frame_pb2.SeqRange(session=s, first_seq=1, last_seq=100) for s in range(1, 5)]
    )
    huge = frame_pb2.Receipt(
        stored=[
            frame_pb2.SeqRange(session=1, first_seq=i, last_seq=i, incarnation=agent.incarnation)
            for i in range(1, 2002)
        ]
    )
    topic = topics.device_topic(device_id, topics.Kind.RECEIPT)
    for r in (wrong, huge):
        rx.client.publish(topic, codec.encode(r), qos=1).wait_for_publish(5)
    assert agent.wait_until(lambda: agent.counters["bad_messages"] == received + 1, 60)
    assert agent.spool.depth == 3
    # The right receipt still works.
    good = frame_pb2.Receipt(
        stored=[
            frame_pb2.SeqRange(session=1, first_seq=1, last_seq=3, incarnation=agent.incarnation)
        ]
    )
    session = next(iter(rx.got.frames))[0]
    good.stored[0].session = session
    rx.client.publish(topic, codec.encode(good), qos=1).wait_for_publish(5)
    assert agent.wait_until(lambda: agent.spool.depth == 0, 60)
