"""The topic scheme: builders, parser, validation and subscription filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camfleet.proto import topics
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind

device_ids = st.from_regex(r"[a-z0-9-][a-z0-9_-]{0,63}", fullmatch=True)


@given(device_ids, st.sampled_from(list(Kind)))
def test_device_topic_parse_is_the_inverse_of_build(device_id: str, kind: Kind) -> None:
    topic = topics.device_topic(device_id, kind)
    parsed = topics.parse(topic)
    assert (parsed.device_id, parsed.kind, parsed.group) == (device_id, kind, None)
    assert str(parsed) == topic


@given(device_ids)
def test_group_topic_round_trip(group: str) -> None:
    parsed = topics.parse(topics.group_cmd_topic(group))
    assert (parsed.group, parsed.kind, parsed.device_id) == (group, Kind.CMD, None)


def test_controller_topic_round_trip() -> None:
    parsed = topics.parse("camfleet/v1/_controller/state")
    assert parsed.is_controller and parsed.kind is Kind.STATE
    assert str(parsed) == topics.controller_state_topic()


def test_custom_root() -> None:
    topic = topics.device_topic("cam-1", Kind.FRAME, root="site_a")
    assert topic == "site_a/v1/cam-1/frame"
    assert topics.parse(topic, root="site_a").device_id == "cam-1"
    with pytest.raises(ContractError):
        topics.parse(topic)  # not under the default root


@pytest.mark.parametrize(
    "bad",
    ["", "+", "#", "a/b", "a\x00b", "Cam", "a" * 65, "_group", "_x", "cam 1", "cam+1", "é", "a.b"],
)
def test_invalid_device_ids_are_refused_with_the_value_named(bad: str) -> None:
    with pytest.raises(ContractError) as info:
        topics.device_topic(bad, Kind.FRAME)
    assert info.value.reason is Reason.BAD_ID
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [None, 5, b"cam"])
def test_non_string_ids_are_refused(bad: object) -> None:
    with pytest.raises(ContractError):
        topics.validate_device_id(bad)


def test_longest_valid_id() -> None:
    assert topics.validate_device_id("a" * 64) == "a" * 64


@pytest.mark.parametrize(
    "topic",
    [
        "camfleet/v1/cam/unknown",
        "camfleet/v2/cam/frame",
        "other/v1/cam/frame",
        "camfleet/v1/Cam/frame",
        "camfleet/v1/+/frame",
        "camfleet/v1/cam",
        "camfleet/v1/cam/frame/extra",
        "camfleet/v1/_group/g/state",
        "camfleet/v1/_group/G/cmd",
        "camfleet/v1/_controller/frame",
        "camfleet/v1//frame",
        "camfleet/v1/cam/ota",
        "camfleet/jpeg/cam",
    ],
)
def test_parse_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(ContractError) as info:
        topics.parse(topic)
    assert info.value.reason is Reason.BAD_TOPIC


@given(st.text(max_size=120))
def test_parse_of_any_text_returns_a_topic_or_raises_contract_error(text: str) -> None:
    try:
        parsed = topics.parse(text)
    except ContractError as exc:
        assert exc.reason is Reason.BAD_TOPIC
    else:
        assert str(parsed) == text


def test_controller_filters_share_only_the_frame_load() -> None:
    filters = topics.controller_filters(share_group="ingest")
    shared = [f for f in filters if f.startswith("$share/")]
    assert sorted(shared) == [
        "$share/ingest/camfleet/v1/+/chunk",
        "$share/ingest/camfleet/v1/+/frame",
    ]
    assert "camfleet/v1/+/state" in filters
    unshared = [f.split("/", 2)[2] if f.startswith("$share/") else f for f in filters]
    kinds = {topics.parse(f.replace("+", "cam-1")).kind for f in unshared}
    assert kinds == set(topics.DEVICE_TO_CONTROLLER)


def test_device_filters_cover_commands_receipts_desired_ota_and_groups() -> None:
    filters = topics.device_filters("cam-1", groups=("north",))
    assert set(filters) == {
        "camfleet/v1/cam-1/cmd",
        "camfleet/v1/cam-1/receipt",
        "camfleet/v1/cam-1/desired",
        "camfleet/v1/cam-1/ota/block",
        "camfleet/v1/_group/north/cmd",
    }


def test_integration_topics_stay_outside_the_protobuf_namespace() -> None:
    jpeg = topics.latest_jpeg_topic("cam-1")
    assert jpeg == "camfleet/jpeg/cam-1"
    with pytest.raises(ContractError):
        topics.parse(jpeg)
    assert topics.ha_discovery_topic("cam-1") == "homeassistant/camera/camfleet_cam-1/config"
