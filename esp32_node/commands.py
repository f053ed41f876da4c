"""Commands from the controller (command.proto): decode, deduplicate, check expiry, run, ack.

Every command is acked with its id (done / failed / expired / rejected + reason). A payload that
does not decode or has no id cannot be acked: it becomes a ``command_rejected`` event. Nothing a
command carries may end the wake: a handler's exception is acked FAILED.

A repeated id (a QoS 1 redelivery, or the controller publishing again what it has no ack for) is
not run again but acked again with the status it got (docs/protocol.md): the first ack may be
what was lost. Recent ids and their last status live in RTC memory as ``[id, status]`` pairs;
status 0 means no final ack was sent yet (a capture still queued in this wake), and the repeat
is then acked ACCEPTED.
"""

import time

import camctl
import cfg as cfgmod
import pb
import schemas as S
import wake

RECENT_COMMANDS = 12  # ids remembered in RTC memory, so a redelivery after a reset runs once


def handle(node, payload):
    try:
        cmd = pb.decode(S.COMMAND, payload)
    except ValueError as e:
        node.event("command_rejected", "undecodable command: %s" % e, S.SEV_WARNING)
        return
    cid = cmd.get("id", "")
    if not cid:
        node.event("command_rejected", "command without id", S.SEV_WARNING)
        return
    recent = node.rtc.setdefault("cmds", [])
    # firmware before 2026-11 kept bare ids: still recognise them after an OTA update
    recent[:] = [e if isinstance(e, list) else [e, 0] for e in recent]
    for entry in recent:
        if entry[0] == cid:
            status = entry[1]
            if status:
                node.ack(cid, status, "repeated command id: not run again")
            else:
                node.ack(cid, S.ACK_ACCEPTED, "repeated command id: in progress")
            return
    recent.append([cid, 0])
    del recent[:-RECENT_COMMANDS]
    action = None
    for name in S.COMMAND_ACTIONS:
        if name in cmd:
            action = name
            break
    if action is None:
        node.ack(cid, S.ACK_REJECTED, "unknown or missing action")
        return
    exp = cmd.get("expires_at_ms", 0)
    now = wake.now_ms()
    if exp and now and now > exp:
        node.ack(cid, S.ACK_EXPIRED, "expired %d ms ago" % (now - exp))
        return
    body = cmd[action]
    try:
        _ACTIONS[action](node, cid, body)
    except Exception as e:
        node.ack(cid, S.ACK_FAILED, "%s: %s" % (action, e))


def acked(node, cid, status):
    """Remember the status a recent command was acked with (for a repeat of its id)."""
    for entry in node.rtc.get("cmds", ()):
        if entry[0] == cid:
            entry[1] = status
            return


def _capture(node, cid, body):
    overrides = body.get("overrides", {})
    try:
        camctl.validate(cfgmod.merge(node.cfg.get("camera", {}), overrides))
    except ValueError as e:
        node.ack(cid, S.ACK_REJECTED, str(e))
        return
    count = max(1, min(body.get("count", 1) or 1, 10))
    node.captures.append(
        (count, body.get("interval_ms", 0), overrides, body.get("metadata", {}), cid)
    )


def _set_config(node, cid, body):
    new = cfgmod.merge(node.cfg, body.get("config", {}))
    problem = node.check_config(new)
    if problem:
        node.ack(cid, S.ACK_REJECTED, problem)
        return
    node.cfg = new
    node.persist_cfg()
    node.ack(cid, S.ACK_DONE)
    node.reported()


def _reboot(node, cid, body):
    node.reboot_after = body.get("delay_ms", 0)
    node.ack(cid, S.ACK_DONE, "rebooting after this wake")


def _stay_awake(node, cid, body):
    secs = min(body.get("seconds", 0), cfgmod.MAX_STAY_AWAKE_S)
    node.stay_until = time.ticks_add(time.ticks_ms(), secs * 1000) if secs else None
    node.ack(cid, S.ACK_DONE, "awake for %d s" % secs)


def _reannounce(node, cid, body):
    node.birth()
    node.reported()
    node.telemetry()
    node.ack(cid, S.ACK_DONE)


def _ota_offer(node, cid, offer):
    problem = node.ota.check_offer(offer)
    progress = {
        "artifact_id": offer.get("artifact_id", ""),
        "version": offer.get("version", ""),
    }
    if problem:
        progress["phase"] = "failed"
        progress["error"] = problem
        node.event("ota", "offer refused: " + problem, S.SEV_WARNING, ota=progress)
        node.ack(cid, S.ACK_REJECTED, problem)
        return
    node.ota.accept(offer, cid)
    progress["phase"] = "accepted"
    progress["blocks_total"] = node.ota.blocks
    node.event("ota", "offer accepted", ota=progress)
    node.ack(cid, S.ACK_ACCEPTED)


_ACTIONS = {
    "capture": _capture,
    "set_config": _set_config,
    "reboot": _reboot,
    "stay_awake": _stay_awake,
    "reannounce": _reannounce,
    "ota_offer": _ota_offer,
}
