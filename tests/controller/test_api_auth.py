"""API users and roles: every route of the OpenAPI document is walked, so a new write route
cannot forget its role check (or its ``x-camfleet-role``), and ``camfleet users`` drives it."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
from click.testing import CliRunner

from camfleet.cli import cli
from camfleet.controller.users import RANK, ROLES
from camfleet.mosquitto import free_port

LOCAL = "local-admin-token"


def test_every_route_refuses_what_its_role_does_not_allow(controllers) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token=LOCAL)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    tokens = {role: ctl.users.add(f"u-{role}", role) for role in ROLES}
    spec: dict[str, Any] = http.get("/openapi.json").json()

    def status(method: str, path: str, token: str | None, body: Any = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.request(method, path, json=body or {}, headers=headers).status_code

    walked = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            role = op.get("x-camfleet-role")
            if method != "get":
                assert role in ("operator", "admin"), f"{where}: a write without a role"
            if role is None:
                continue  # an open read
            concrete = re.sub(r"\{[^}]+\}", "nope", path)
            assert status(method, concrete, None) == 401, where
            assert status(method, concrete, "not-a-token") == 401, where
            assert status(method, concrete, "Bearer") == 401, where
            for lower in ROLES[: RANK[role]]:
                assert status(method, concrete, tokens[lower]) == 403, f"{where} as {lower}"
            for allowed in (tokens[role], LOCAL):  # past the check: any answer but 401/403
                assert status(method, concrete, allowed) not in (401, 403), where
            walked.append(where)
    assert "POST /api/v1/commands" in walked and "POST /api/v1/users" in walked
    assert "GET /api/v1/users" in walked  # who the users are is admin business too

    # OTA offers need admin even though other commands need only an operator.
    offer = {"action": "ota_offer", "device": "nope", "params": {}}
    assert status("POST", "/api/v1/commands", tokens["operator"], offer) == 403
    assert status("POST", "/api/v1/commands", tokens["admin"], offer) not in (401, 403)
    capture = {"action": "capture", "device": "nope"}
    assert status("POST", "/api/v1/commands", tokens["operator"], capture) == 201
    assert status("POST", "/api/v1/commands", tokens["viewer"], capture) == 403


def test_users_cli_tokens_are_stored_hashed_and_removal_is_immediate(controllers) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token=LOCAL)
    api = f"http://127.0.0.1:{port}"

    def run(*args: str, token: str = LOCAL) -> Any:
        env = {"CAMFLEET_API": api, "CAMFLEET_TOKEN": token}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    added = run("users", "add", "bob", "--role", "viewer")
    assert added.exit_code == 0, added.stderr
    token = added.stdout.strip().rsplit(" ", 1)[-1]
    with ctl.db.read() as tx:
        row = tx.one("SELECT * FROM api_users WHERE name = 'bob'")
    assert row is not None and token not in str(dict(row))
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    listed = run("users", "ls")
    assert listed.stdout.splitlines()[1].split()[:2] == ["bob", "viewer"]

    refused = run("capture", "some-cam", "--allow-unknown", token=token)
    assert refused.exit_code != 0
    assert refused.stderr.strip().splitlines() == [
        "camfleet: error: user 'bob' is a viewer; this needs operator (HTTP 403)"
    ]
    assert run("users", "ls", token=token).exit_code != 0  # a viewer cannot list users

    again = run("users", "add", "bob", "--role", "admin")
    assert again.exit_code != 0 and "exists" in again.stderr
    assert run("users", "rm", "bob").exit_code == 0
    gone = run("capture", "some-cam", "--allow-unknown", token=token)
    assert "refused the token" in gone.stderr


def test_a_public_address_without_tls_is_warned_about(controllers, caplog) -> None:  # type: ignore[no-untyped-def]
    from camfleet.controller.api.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("camfleet.example.org")
    caplog.set_level("WARNING", logger="camfleet.controller.api.server")
    controllers(http=f"127.0.0.1:{free_port()}", token=LOCAL)
    assert not [r for r in caplog.records if "without TLS" in r.message]
    controllers(http=f"0.0.0.0:{free_port()}", token=LOCAL)
    assert [r for r in caplog.records if "without TLS" in r.message]
