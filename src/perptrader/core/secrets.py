"""One place that hides secrets before anything is shown or logged.

Every message, log line and printed setting that may hold a connection URL or a key goes
through ``mask_secrets`` (text), ``mask_url`` (one URL) or ``mask_data`` (settings dumps,
log event dicts). The JSON log file and the console renderer apply ``mask_data`` to every
event (core/logging.py), so a URL with a password that slips into an exception message
is masked there too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

#: names of settings / fields whose value is a secret as a whole
SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|private[_-]?key|"
    r"credentials?|auth)$", re.IGNORECASE)

# scheme://user:password@host: the user part holds no ':', '/', '@'; the password runs
# to the LAST '@' before the path (an unescaped '@' in a password is masked whole)
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*:)(?P<secret>[^\s'\"/]*)(?P<at>@)")
# key=value pairs in DSNs and query strings: password=..., ?token=..., api_key: ...
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|private[_-]?key)"
    r"\s*[=:]\s*['\"]?)(?P<secret>[^\s&;'\",}]+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``postgresql://user:pw@host/db`` -> ``postgresql://user:***@host/db`` (also key=value
    secrets in its query string). Anything that is not a URL comes back unchanged."""
    return mask_secrets(url)


def mask_secrets(text: str) -> str:
    """Every URL password and every ``password=``/``token=``/``api_key=`` value in
    ``text`` replaced by ``***``."""
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", out)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(str(name)))


def mask_data(value: Any, name: str = "") -> Any:
    """A copy of ``value`` (mappings, lists, strings) with secrets masked: values under a
    secret-looking key become ``***``, strings are passed through ``mask_secrets``."""
    if name and is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, Mapping):
        return {k: mask_data(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_data(v) for v in value)
    return value


__all__ = ["MASK", "is_secret_name", "mask_data", "mask_secrets", "mask_url"]
