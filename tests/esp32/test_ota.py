"""OTA into the next partition: resumable block download, per-block and whole-image checks,
HMAC authenticity, and bootloader rollback of an image that fails its health check."""

from __future__ import annotations

import threading

from camfleet.esp32_node.tools.images import make_app_image, read_image
from camfleet.proto.v1 import command_pb2, state_pb2
from camfleet.testing.esp32_receiver import OtaImage
from tests.esp32.conftest import DEVICE_KEY

OTA_VALID = 2
OTA_ABORTED = 4


def _offer(rx, img, version, signature=None, cid="ota-1"):
    rx.ota = img
    rx.send_command(
        command_pb2.Command(id=cid, ota_offer=img.offer(DEVICE_KEY, version, signature))
    )


def _births(rx):
    return [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]


def _ota_1_state(dev):
    """The otadata state of the ota_1 slot (ESP-IDF: slot = (seq - 1) % 2)."""
    states = [state for seq, state in dev.otadata() if seq and (seq - 1) % 2 == 1]
    assert len(states) == 1
    return states[0]


def _ota_phases(rx):
    return [e.ota.phase for e in rx.of("event") if e.type == "ota"]


def test_image_delivered_across_a_power_cut_and_a_corrupted_block(
    mosquitto, make_device, receiver_for
):
    image = make_app_image("1.1.0", 1_500_000, seed=11)
    assert read_image(image).digest_ok
    img = OtaImage("fw-1.1.0", image, corrupt_once={300})
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    _offer(rx, img, "1.1.0")

    cut = threading.Event()

    def power_cut_midway(served: int) -> None:
        if served == 150 and not cut.is_set():
            cut.set()
            dev.cut_power()

    rx.on_block_served = power_cut_midway
    woke = dev.run_wake()
    assert cut.is_set() and woke.ended == "power_cut", woke.output
    bits = dev.read_nvs()["ota_bits"]
    done = sum(bin(b).count("1") for b in bits)
    assert 100 <= done < img.total_blocks  # progress survived the cut in NVS
    rx.on_block_served = None
    served_before = img.served

    woke = dev.run_wake()  # power-on: resumes, downloads the rest, verifies, reboots

    assert woke.ended == "hard", woke.output
    # resumed, not restarted: the rest plus the corrupted block again (and a few in flight)
    assert img.served - served_before < img.total_blocks - done + 20
    assert not img.corrupt_once  # block 300 was sent corrupted once ...
    assert "verifying" in _ota_phases(rx) and "rebooting" in _ota_phases(rx)
    ota_1 = (dev.dir / "flash" / "ota_1.bin").read_bytes()[: len(image)]
    assert ota_1 == image  # ... and fetched again: the flash holds the exact image
    acks = {a.command_id: a.status for a in rx.of("ack")}
    assert acks["ota-1"] == command_pb2.ACK_STATUS_DONE

    woke = dev.run_wake()  # first boot of the new image
    assert woke.ended == "deepsleep", woke.output
    birth = _births(rx)[-1]
    assert (birth.firmware_version, birth.ota_slot) == ("1.1.0", "ota_1")
    assert _ota_phases(rx)[-1] == "succeeded"
    assert rx.noncanonical == []  # OtaBlockRequests, Events with OtaProgress, Acks
    assert _ota_1_state(dev) == OTA_VALID


def test_bad_hmac_is_refused(mosquitto, make_device, receiver_for):
    img = OtaImage("fw-evil", make_app_image("6.6.6", 64 * 1024))
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()  # first connect: from now on the broker queues its commands
    _offer(rx, img, "6.6.6", signature=b"\x00" * 32)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep"
    acks = {a.command_id: a for a in rx.of("ack")}
    assert acks["ota-1"].status == command_pb2.ACK_STATUS_REJECTED
    assert "signature" in acks["ota-1"].detail
    assert img.requests == 0  # not one block asked for
    assert _ota_phases(rx) == ["failed"]
    assert dev.otadata() is None


def test_image_too_big_for_the_partition_is_refused(mosquitto, make_device, receiver_for):
    img = OtaImage("fw-huge", make_app_image("9.9.9", 1_800_000))
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    _offer(rx, img, "9.9.9")
    dev.run_wake()
    acks = {a.command_id: a for a in rx.of("ack")}
    assert acks["ota-1"].status == command_pb2.ACK_STATUS_REJECTED
    assert "does not fit" in acks["ota-1"].detail


def test_image_failing_its_health_check_is_rolled_back_and_reported(
    mosquitto, make_device, receiver_for
):
    img = OtaImage("fw-1.2.0", make_app_image("1.2.0", 200_000, seed=3))
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    _offer(rx, img, "1.2.0")
    assert dev.run_wake().ended == "hard"  # downloaded, verified, set_boot, reset

    dev.set_fault("wifi", 1)  # the new image cannot reach the network: no health check
    woke = dev.run_wake()
    assert woke.ended == "deepsleep"
    assert "not confirming" in woke.output
    assert "1.2.0 (ota_1)" in woke.output  # it did run the new image

    woke = dev.run_wake()  # the bootloader finds it still pending and rolls back
    assert woke.ended == "deepsleep", woke.output
    assert _ota_1_state(dev) == OTA_ABORTED
    birth = _births(rx)[-1]
    assert (birth.firmware_version, birth.ota_slot) == ("1.0.0", "ota_0")
    rolled = [e for e in rx.of("event") if e.type == "ota" and e.ota.phase == "rolled_back"]
    assert len(rolled) == 1 and rolled[0].ota.version == "1.2.0"


def test_download_paused_by_the_wake_budget_resumes_after_deep_sleep(
    mosquitto, make_device, receiver_for
):
    """The wake budget runs on the chip's clock, which the host port advances by the flash time
    of every sector written: 500 ms a sector against a 30 s budget pauses the download after at
    most 60 of its 147 blocks, whatever the host's load, so the test cannot finish in one wake
    (it did, on a fast run, when the budget was 150 ms of wall time)."""
    image = make_app_image("1.3.0", 600_000, seed=5)
    img = OtaImage("fw-1.3.0", image)
    dev = make_device(mosquitto, extra_nvs={"ota_max_ms": 30_000})
    dev.set_fault("flash_sector_ms", 500)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    _offer(rx, img, "1.3.0")

    endings = []
    while not endings or endings[-1] != "hard":
        assert len(endings) < 40, "OTA never completed"
        endings.append(dev.run_wake().ended)

    assert endings.count("deepsleep") >= 2  # paused at least twice, resumed after sleeping
    paused = [e for e in rx.of("event") if e.type == "ota" and e.ota.phase == "downloading"]
    assert len(paused) == endings.count("deepsleep")
    done = [e.ota.blocks_done for e in paused]
    assert done == sorted(set(done)) and done[0] > 0 and done[-1] < img.total_blocks, done
    assert (dev.dir / "flash" / "ota_1.bin").read_bytes()[: len(image)] == image
    assert img.served < img.total_blocks * 1.3  # resumed: blocks are not fetched again


def test_a_node_holding_every_block_verifies_even_when_its_wake_budget_is_spent(
    mosquitto, make_device, receiver_for
):
    """Every sector write (2 s of chip time) overruns the 1 s budget, so the budget is spent
    whenever a block arrives, including the last one. Catches a download loop that checks the
    budget before it checks for completion: that node sleeps with the whole image in hand
    (a "paused" event with blocks_done == blocks_total) and verifies a wake later."""
    image = make_app_image("1.4.0", 30_000, seed=7)
    img = OtaImage("fw-1.4.0", image)
    dev = make_device(mosquitto, extra_nvs={"ota_max_ms": 1_000})
    dev.set_fault("flash_sector_ms", 2_000)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    _offer(rx, img, "1.4.0")

    endings = []
    while not endings or endings[-1] != "hard":
        assert len(endings) < 3 * img.total_blocks, "OTA never completed"
        endings.append(dev.run_wake().ended)

    paused = [e.ota.blocks_done for e in rx.of("event") if e.ota.phase == "downloading"]
    assert paused and max(paused) < img.total_blocks, paused
    assert _ota_phases(rx)[-2:] == ["verifying", "rebooting"]
