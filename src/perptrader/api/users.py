"""API users and their tokens: ``<data_dir>/users.sqlite`` (mode 0600).

Kept apart from the trading journal on purpose: the journal is the trading record (and
may be a shared PostgreSQL database), users are the API's own business, and a fresh
data dir has no users at all, so every protected route refuses everything until
``perptrader users add``.

Tables:

- ``users``: username, argon2id hash (argon2-cffi defaults), created time;
- ``tokens``: every refresh token issued (its ``jti``, owner, expiry, revoked time) and
  every access token revoked early by a logout. A refresh token is single-use (rotated
  on ``/auth/refresh``); presenting a revoked one again is treated as theft and revokes
  every refresh token of that user. Rows are purged once expired.

Every call opens its own short SQLite connection (WAL), so the CLI and the server can
use the file at the same time.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from perptrader.core.errors import PerptraderError

USERS_FILE = "users.sqlite"
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        jti TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        kind TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER)""",
    "CREATE INDEX IF NOT EXISTS tokens_user ON tokens (username)",
)


class UserStore:
    """Users, password checks and token records in one small SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._hasher = PasswordHasher()
        self._dummy: str | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> UserStore:
        return cls(Path(data_dir) / USERS_FILE)

    # ---- the file ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self, *, create: bool = False) -> Iterator[sqlite3.Connection | None]:
        """A connection in one transaction; None when the file does not exist and
        ``create`` is false (no users yet)."""
        if not self.path.exists():
            if not create:
                yield None
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise PerptraderError(f"cannot open the users file {self.path}: {exc}") from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA:
                con.execute(stmt)
            yield con
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise PerptraderError(f"the users file {self.path} is not usable ({exc}); move it "
                                  "away and add the users again") from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    # ---- users ---------------------------------------------------------------------------
    def add(self, username: str, password: str, *, replace: bool = False) -> None:
        """Add a user (``replace``: set a new password for an existing one, which also
        revokes that user's refresh tokens)."""
        check_username(username)
        if len(password) < MIN_PASSWORD:
            raise PerptraderError(f"the password must have at least {MIN_PASSWORD} characters")
        digest = self._hasher.hash(password)
        with self._connect(create=True) as con:
            assert con is not None
            exists = con.execute("SELECT 1 FROM users WHERE username = ?",
                                 (username,)).fetchone()
            if exists and not replace:
                raise PerptraderError(f"user {username!r} exists (use --replace to set a new "
                                      "password)")
            con.execute("INSERT OR REPLACE INTO users (username, password_hash, created_at) "
                        "VALUES (?, ?, ?)", (username, digest, _now()))
            if exists:
                _revoke_all(con, username)

    def remove(self, username: str) -> None:
        """Remove a user; their tokens stop working at once."""
        with self._connect() as con:
            gone = con is None or con.execute("DELETE FROM users WHERE username = ?",
                                              (username,)).rowcount == 0
            if con is not None:
                con.execute("DELETE FROM tokens WHERE username = ?", (username,))
        if gone:
            raise PerptraderError(f"no user {username!r}")

    def list(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            if con is None:
                return []
            rows = con.execute("SELECT username, created_at FROM users ORDER BY username")
            return [{"username": u, "created_at": c} for u, c in rows.fetchall()]

    def count(self) -> int:
        with self._connect() as con:
            return 0 if con is None else int(
                con.execute("SELECT count(*) FROM users").fetchone()[0])

    def exists(self, username: str) -> bool:
        with self._connect() as con:
            return con is not None and con.execute(
                "SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is not None

    def verify(self, username: str, password: str) -> bool:
        """Whether the password is the user's. An unknown user costs the same argon2
        verification as a known one (no timing oracle for user names)."""
        with self._connect() as con:
            row = None if con is None else con.execute(
                "SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash("not a password of anyone")
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy, password)
            return False
        try:
            self._hasher.verify(row[0], password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if self._hasher.check_needs_rehash(row[0]):
            with self._connect() as con:
                assert con is not None
                con.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                            (self._hasher.hash(password), username))
        return True

    # ---- tokens --------------------------------------------------------------------------
    def record_refresh(self, jti: str, username: str, expires_at: int) -> None:
        with self._connect(create=True) as con:
            assert con is not None
            con.execute("DELETE FROM tokens WHERE expires_at < ?", (_now(),))
            con.execute("INSERT INTO tokens (jti, username, kind, expires_at) "
                        "VALUES (?, ?, 'refresh', ?)", (jti, username, expires_at))

    def use_refresh(self, jti: str, username: str) -> str | None:
        """Spend a refresh token (rotation): None when it was valid (now revoked), else
        why not. Reusing a spent token revokes every refresh token of the user."""
        with self._connect() as con:
            if con is None:
                return "unknown user"
            if con.execute("SELECT 1 FROM users WHERE username = ?",
                           (username,)).fetchone() is None:
                return "unknown user"
            row = con.execute("SELECT username, revoked_at FROM tokens WHERE jti = ? AND "
                              "kind = 'refresh'", (jti,)).fetchone()
            if row is None or row[0] != username:
                return "unknown refresh token"
            if row[1] is not None:
                _revoke_all(con, username)
                return "refresh token revoked"
            con.execute("UPDATE tokens SET revoked_at = ? WHERE jti = ?", (_now(), jti))
        return None

    def revoke(self, jti: str, username: str, kind: str, expires_at: int) -> None:
        """Revoke one token (logout): a refresh token's row is marked, an access token
        gets a row until it expires."""
        with self._connect(create=True) as con:
            assert con is not None
            con.execute("INSERT INTO tokens (jti, username, kind, expires_at, revoked_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (jti) DO UPDATE SET "
                        "revoked_at = excluded.revoked_at", (jti, username, kind, expires_at,
                                                             _now()))

    def access_refused(self, jti: str, username: str) -> str | None:
        """Why an access token (signature and expiry already checked) is refused, or None."""
        with self._connect() as con:
            if con is None or con.execute("SELECT 1 FROM users WHERE username = ?",
                                          (username,)).fetchone() is None:
                return "unknown user"
            row = con.execute("SELECT revoked_at FROM tokens WHERE jti = ?", (jti,)).fetchone()
            if row is not None and row[0] is not None:
                return "token revoked"
        return None


def check_username(username: str) -> str:
    if not _NAME.match(username or ""):
        raise PerptraderError(f"invalid user name {username!r}: 1-64 letters, digits, "
                              "'.', '_', '@', '-' (starting with a letter or digit)")
    return username


def _revoke_all(con: sqlite3.Connection, username: str) -> None:
    con.execute("UPDATE tokens SET revoked_at = ? WHERE username = ? AND kind = 'refresh' "
                "AND revoked_at IS NULL", (_now(), username))


def _now() -> int:
    return int(time.time())
