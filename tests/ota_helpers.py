"""Session fixtures of the OTA tests: two release keys (the fleet's and an attacker's)."""

from __future__ import annotations

import pytest

from camfleet.testing.ota_images import (
    ReleaseKey,
    make_key,
    s3_image,
    sign,
    signed_image,
)

__all__ = ["ReleaseKey", "other_key", "release_key", "s3_image", "sign", "signed_image"]


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> ReleaseKey:
    return make_key(tmp_path_factory.mktemp("keys"), "release")


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> ReleaseKey:
    return make_key(tmp_path_factory.mktemp("other-keys"), "attacker")
