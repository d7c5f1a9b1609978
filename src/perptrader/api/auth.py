"""Tokens (PyJWT, HS256): a short-lived access token and a single-use refresh token.

Claims: ``sub`` (user), ``typ`` ("access" | "refresh" | "link"), ``jti``, ``iat``,
``exp``, ``aud`` ("perptrader-api"). An access token is accepted while it is unexpired,
its user exists and it was not revoked by a logout; a refresh token only once (see
``users``). A "link" token is a 60-second ticket bound to one path, for opening an HTML
report in a new browser tab (which cannot send an Authorization header).

The signing key: ``api.jwt_secret`` (``PERPTRADER__API__JWT_SECRET``), else
``<data_dir>/api_secret``, generated once with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from perptrader.api.users import UserStore
from perptrader.core.errors import PerptraderError

SECRET_FILE = "api_secret"
AUDIENCE = "perptrader-api"
ALGORITHM = "HS256"
MIN_SECRET = 32
LINK_SECONDS = 60


class AuthError(Exception):
    """A refused credential; the message says why (sent to the client)."""


def load_secret(configured: str | None, data_dir: Path | str) -> str:
    """The configured secret, else the one in ``<data_dir>/api_secret`` (created once,
    0600; a concurrent creator's file wins)."""
    if configured:
        if len(configured) < MIN_SECRET:
            raise PerptraderError(f"api.jwt_secret must have at least {MIN_SECRET} characters "
                                  "(e.g. `python -c 'import secrets; "
                                  "print(secrets.token_urlsafe(48))'`)")
        return configured
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(48))
    for _ in range(50):  # a concurrent creator may not have written it yet
        value = path.read_text(encoding="utf-8").strip()
        if value:
            break
        time.sleep(0.02)
    if len(value) < MIN_SECRET:
        raise PerptraderError(f"{path} holds no usable secret: delete it (every token "
                              "becomes invalid) and start again")
    return value


@dataclass(frozen=True)
class Claims:
    username: str
    kind: str
    jti: str
    expires_at: int
    path: str | None = None


class TokenService:
    def __init__(self, secret: str, users: UserStore, *, access_minutes: float = 15.0,
                 refresh_days: float = 7.0) -> None:
        self._secret = secret
        self.users = users
        self.access_seconds = int(access_minutes * 60)
        self.refresh_seconds = int(refresh_days * 86400)

    def _encode(self, username: str, kind: str, seconds: int, **extra: Any) -> tuple[str, str,
                                                                                      int]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        exp = now + seconds
        token = jwt.encode({"sub": username, "typ": kind, "jti": jti, "iat": now, "exp": exp,
                            "aud": AUDIENCE, **extra}, self._secret, algorithm=ALGORITHM)
        return token, jti, exp

    def issue(self, username: str) -> dict[str, Any]:
        """A new access + refresh pair (the refresh token is recorded)."""
        access, _, _ = self._encode(username, "access", self.access_seconds)
        refresh, jti, exp = self._encode(username, "refresh", self.refresh_seconds)
        self.users.record_refresh(jti, username, exp)
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                "expires_in": self.access_seconds, "refresh_expires_in": self.refresh_seconds}

    def link(self, username: str, path: str) -> str:
        token, _, _ = self._encode(username, "link", LINK_SECONDS, path=path)
        return token

    def decode(self, token: str, kind: str) -> Claims:
        """Signature, audience, expiry and type; raises ``AuthError``."""
        try:
            data = jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                              options={"require": ["exp", "iat", "sub", "jti", "typ"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid token") from None
        if data.get("typ") != kind:
            raise AuthError(f"not an {kind} token" if kind[0] in "aeiou"
                            else f"not a {kind} token")
        return Claims(str(data["sub"]), kind, str(data["jti"]), int(data["exp"]),
                      data.get("path"))

    def verify_access(self, token: str) -> Claims:
        claims = self.decode(token, "access")
        problem = self.users.access_refused(claims.jti, claims.username)
        if problem:
            raise AuthError(problem)
        return claims

    def verify_link(self, token: str, path: str) -> Claims:
        claims = self.decode(token, "link")
        if claims.path != path:
            raise AuthError("link token for another path")
        if not self.users.exists(claims.username):
            raise AuthError("unknown user")
        return claims

    def refresh(self, token: str) -> dict[str, Any]:
        """Spend a refresh token for a new pair (rotation)."""
        claims = self.decode(token, "refresh")
        problem = self.users.use_refresh(claims.jti, claims.username)
        if problem:
            raise AuthError(problem)
        return self.issue(claims.username)

    def logout(self, access: Claims, refresh_token: str | None) -> None:
        """Revoke the access token and, when given (and the same user's), the refresh one."""
        self.users.revoke(access.jti, access.username, "access", access.expires_at)
        if refresh_token:
            try:
                claims = self.decode(refresh_token, "refresh")
            except AuthError:
                return
            if claims.username == access.username:
                self.users.revoke(claims.jti, claims.username, "refresh", claims.expires_at)
