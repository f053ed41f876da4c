"""Named API users with roles, their tokens stored hashed (table ``api_users``).

Roles, each including the ones before it:
- ``viewer``: read (the GET routes);
- ``operator``: captures and other commands, config, schedules, device groups and tags;
- ``admin``: OTA offers and users.

The controller's own token (DATA/api-token, or ``--token``) is the built-in local admin, so the
CLI on the controller's machine works without creating a user. Tokens are 32 random bytes, so
one SHA-256 is enough to store them (a slow password hash guards guessable secrets); only the
hash is kept and a token is shown once, when its user is added.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from camfleet.controller.storage.database import Database
from camfleet.errors import UserError

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
LOCAL_ADMIN = "local-admin"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, db: Database, local_token: str) -> None:
        self.db = db
        self.local_token = local_token

    def authenticate(self, token: str) -> User | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self.local_token.encode()):
            return User(LOCAL_ADMIN, "admin")
        with self.db.read() as tx:
            row = tx.one(
                "SELECT name, role FROM api_users WHERE token_hash = ?", (hash_token(token),)
            )
        return None if row is None else User(row["name"], row["role"])

    def add(self, name: str, role: str) -> str:
        """Create a user; return its token (the only time it is seen)."""
        if not _NAME_RE.fullmatch(name) or name == LOCAL_ADMIN:
            raise UserError(
                f"invalid user name {name!r}: use 1-64 of a-z 0-9 _ . - "
                f"(starting with a letter or digit; {LOCAL_ADMIN!r} is built in)"
            )
        if role not in RANK:
            raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        token = secrets.token_urlsafe(32)
        with self.db.transaction() as tx:
            if tx.one("SELECT name FROM api_users WHERE name = ?", (name,)) is not None:
                raise UserError(f"user {name!r} exists: remove it first to issue a new token")
            tx.execute(
                "INSERT INTO api_users (name, role, token_hash, created_ms) VALUES (?, ?, ?, ?)",
                (name, role, hash_token(token), int(time.time() * 1000)),
            )
        return token

    def remove(self, name: str) -> bool:
        with self.db.transaction() as tx:
            return bool(tx.execute("DELETE FROM api_users WHERE name = ?", (name,)))

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.query("SELECT name, role, created_ms FROM api_users ORDER BY name")
        return [{"name": r["name"], "role": r["role"], "created_ms": r["created_ms"]} for r in rows]
