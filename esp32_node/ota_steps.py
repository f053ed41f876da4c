"""The OTA steps of a wake, on top of ota.Ota: the health check that confirms (or reports the
rollback of) a new image, and the block download loop of an accepted offer."""

import time

import ota as otamod
import pb
import schemas as S

OTA_MAX_MS = 120000  # per wake (NVS ota_max_ms); the rest resumes next wake
OTA_REQUEST_RETRY_MS = 3000


def boot_check(node):
    """After the birth (Wi-Fi + broker + birth = healthy): confirm or report a rollback."""
    pend = otamod.pending(node.store)
    if pend is None:
        return
    progress = {"artifact_id": pend.get("artifact_id", ""), "version": pend.get("version", "")}
    if pend.get("slot") == node.slot:
        otamod.confirm(node.store)
        progress["phase"] = "succeeded"
        node.event("ota", "running %s" % node.firmware, ota=progress)
    else:
        node.store.erase("ota_pend")
        node.store.commit()
        progress["phase"] = "rolled_back"
        progress["error"] = "new image failed its health check; running %s again" % node.firmware
        node.event("ota", progress["error"], S.SEV_ERROR, ota=progress)


def download(node):
    o = node.ota
    offer = o.offer
    if not o.active or not node.online:
        return
    art = offer["artifact_id"]
    progress = {
        "artifact_id": art,
        "version": offer.get("version", ""),
        "blocks_total": o.blocks,
    }
    start = time.ticks_ms()
    budget = node.store.int("ota_max_ms", OTA_MAX_MS)  # NVS override, e.g. for a slow link
    asked_at = time.ticks_ms()
    answered_at = 0  # o.responses when the last request went out
    expected = 0  # blocks that request asked for
    while node.online:
        node.wdt.feed()
        # completion first: a node holding every block verifies now, even when its budget is
        # spent, instead of sleeping and spending a whole wake on it
        window = o.missing_window()
        if window is None:
            break
        if time.ticks_diff(time.ticks_ms(), start) > budget:
            progress["phase"] = "downloading"
            progress["blocks_done"] = o.done_count()
            node.event("ota", "paused, resumes next wake", ota=progress)
            return
        # ask for the next window when every block of the last one came back (good or
        # corrupted), or when the answer is late (lost request, controller restart)
        stale = time.ticks_diff(time.ticks_ms(), asked_at) > OTA_REQUEST_RETRY_MS
        if o.responses - answered_at >= expected or stale:
            req = {
                "artifact_id": art,
                "first_block": window[0],
                "count": window[1],
                "wanted": window[2],
                "session": node.session,
            }
            node.publish("ota/request", pb.encode(S.OTA_BLOCK_REQUEST, req))
            expected = _bits_set(window[2])
            answered_at = o.responses
            asked_at = time.ticks_ms()
        node.drain(200)
    if not node.online:
        return
    progress["blocks_done"] = o.blocks
    progress["phase"] = "verifying"
    node.event("ota", "verifying", ota=progress)
    cid = o.command_id
    try:
        o.verify()
        o.switch(node.slot, node.firmware)
    except otamod.OtaError as e:
        progress["phase"] = "failed"
        progress["error"] = str(e)
        node.event("ota", str(e), S.SEV_ERROR, ota=progress)
        if cid:
            node.ack(cid, S.ACK_FAILED, str(e))
        if str(e) in ("bad signature", "not an ESP32 app image") or str(e).startswith(
            "refused by the boot verification"
        ):
            o.clear()  # the same bytes would be refused again: forget the offer
        return
    progress["phase"] = "rebooting"
    node.event("ota", "image verified, rebooting into it", ota=progress)
    if cid:
        node.ack(cid, S.ACK_DONE, "verified, rebooting")
    node.reboot_after = 0


def _bits_set(bitmap):
    n = 0
    for b in bitmap:
        while b:
            n += b & 1
            b >>= 1
    return n
