"""Commands and desired state reach sleeping nodes on their next wake; expiry is honoured."""

from __future__ import annotations

from camfleet.controller.frames.index import query
from camfleet.testing.controller_process import Waiter


def _status(ctl, command_id: str) -> str:  # type: ignore[no-untyped-def]
    with ctl.db.read() as tx:
        return str(ctl.commands.get_row(tx, command_id)["status"])


def _device(ctl, device_id: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    with ctl.db.read() as tx:
        row = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
    return row or {}


def test_command_waits_for_sleeping_node_and_expired_one_is_not_run(controllers, devices) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    node = devices("sleeper", capabilities=("jpeg", "deep_sleep"))
    assert waiter.wait_for(lambda: _device(ctl, node.device_id).get("presence") == "online")
    node.sleep(seconds=600)
    assert waiter.wait_for(lambda: _device(ctl, node.device_id).get("presence") == "asleep")
    assert ctl.device_state(_device(ctl, node.device_id)) == "asleep"

    capture = ctl.commands.create("capture", {"count": 2}, device_id=node.device_id)[0]
    short = ctl.commands.create("reboot", {}, device_id=node.device_id, expires_in_s=0.3)[0]
    # The broker took both: they are pending in the node's persistent session.
    assert waiter.wait_for(lambda: _status(ctl, capture["id"]) == "sent", 10)
    assert waiter.wait_for(lambda: _status(ctl, short["id"]) == "expired", 10)
    assert node.commands == []

    node.wake()
    assert waiter.wait_for(lambda: _status(ctl, capture["id"]) == "done", 15)
    with ctl.db.read() as tx:
        short_row = ctl.commands.get_row(tx, short["id"])
        capture_row = ctl.commands.to_json(ctl.commands.get_row(tx, capture["id"]))
    ran = {c.command.id: c.ran for c in node.commands}
    assert ran == {capture["id"]: True, short["id"]: False}
    assert waiter.wait_for(
        lambda: (
            _status(ctl, short["id"]) == "expired"
            and ctl.metrics.get("acks_total", status="expired") == 1
        ),
        10,
    )
    assert short_row["status"] == "expired"
    assert len(capture_row["capture_ids"]) == 2
    # The frames the capture produced are stored and linked to the command.
    assert waiter.wait_for(lambda: len(_frames_of(ctl, capture["id"])) == 2, 10), (
        "capture frames not stored"
    )


def test_a_command_created_before_the_device_ever_connected_runs_after_its_first_birth(
    controllers,  # type: ignore[no-untyped-def]
    devices,
) -> None:
    ctl = controllers()
    waiter = Waiter(ctl)
    node = devices("newcomer", connect=False)
    cmd = ctl.commands.create("capture", {"count": 1}, device_id=node.device_id)[0]
    # The broker PUBACKs it although no session exists for the device: it is dropped there.
    assert waiter.wait_for(lambda: _status(ctl, cmd["id"]) == "sent", 10)
    node.connect()
    assert waiter.wait_for(lambda: _status(ctl, cmd["id"]) == "done", 15)
    assert [(c.command.id, c.ran) for c in node.commands] == [(cmd["id"], True)]
    assert ctl.metrics.get("commands_resent_after_birth_total") == 1


def _frames_of(ctl, command_id: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    with ctl.db.read() as tx:
        return query(tx, command_id=command_id)


def test_desired_config_merges_groups_and_reaches_a_sleeping_node(controllers, devices) -> None:  # type: ignore[no-untyped-def]
    from camfleet.controller.commands import config_from_json

    ctl = controllers()
    waiter = Waiter(ctl)
    node = devices("cfg", capabilities=("jpeg", "deep_sleep"), groups=("garden",))
    assert waiter.wait_for(lambda: _device(ctl, node.device_id).get("presence") == "online")
    node.sleep(seconds=600)
    ctl.desired.set_layer(
        "group", "garden", config_from_json({"camera": {"jpeg_quality": 70, "hflip": True}})
    )
    ctl.desired.set_layer(
        "device", node.device_id, config_from_json({"camera": {"jpeg_quality": 90}})
    )
    with ctl.db.read() as tx:
        status = ctl.desired.status(tx, node.device_id)
    assert status["desired"]["camera"] == {"jpeg_quality": 90, "hflip": True}
    assert status["version"] == 2 and status["drift"]
    node.wake()
    assert node.wait_until(lambda: any(d.version == 2 for d in node.desired), 60)

    def in_sync() -> bool:
        with ctl.db.read() as tx:
            s = ctl.desired.status(tx, node.device_id)
        return s["reported_version"] == 2 and not s["drift"]

    assert waiter.wait_for(in_sync, 10)
