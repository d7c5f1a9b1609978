"""One settings tree for the whole program.

Sources, highest priority first: keyword arguments, environment variables
(``PERPTRADER__SECTION__KEY``, e.g. ``PERPTRADER__STORE__URL``), the TOML file
(``perptrader.toml`` in the working directory, or the path in ``PERPTRADER_CONFIG``),
then the defaults below. Every artifact lives under ``data_dir`` so that one folder
holds a whole installation.

An unknown key, in the file or in a ``PERPTRADER__`` variable, is refused with the
nearest valid name (``PERPTRADER__STORE__UR`` would otherwise be ignored silently and
the store fall back to the embedded default).
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from perptrader.core.errors import ConfigError

ENV_PREFIX = "PERPTRADER__"


class StoreSettings(BaseModel):
    """Where market data is stored."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description=(
            "None: the embedded DuckDB store under data_dir. "
            "postgresql://user@host:port/db: the PostgreSQL/TimescaleDB store."
        ),
    )


class ExchangeSettings(BaseModel):
    """Which exchange base URL backfills, collectors and brokers talk to."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="None: the venue's own URLs. http://127.0.0.1:8765: the local fake "
                    "exchange (`perptrader fake-exchange`).",
    )


class TradingSettings(BaseModel):
    """Where trading state (orders, fills, positions, audit log) is kept."""

    model_config = ConfigDict(extra="forbid")

    db_url: str | None = Field(
        default=None,
        description=(
            "None: SQLite (WAL) at <data_dir>/trading.sqlite, shareable by several "
            "processes. postgresql://user@host:port/db: PostgreSQL (the same migrations)."
        ),
    )


class ApiSettings(BaseModel):
    """The API server and dashboard (`perptrader serve`)."""

    host: str = Field(default="127.0.0.1", description="Bind address: loopback unless told "
                      "otherwise (0.0.0.0 exposes it to the network; put TLS in front).")
    port: int = Field(default=8080, ge=1, le=65535)
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 signing key of the tokens (never printed). None: "
                                  "generated once into <data_dir>/api_secret (mode 0600).")
    access_minutes: float = Field(default=15.0, gt=0, description="Access-token lifetime.")
    refresh_days: float = Field(default=7.0, gt=0, description="Refresh-token lifetime.")


class NotifySettings(BaseModel):
    """Telegram alerts and commands (``perptrader notify run``; docs/deploy.md)."""

    telegram_token: SecretStr | None = Field(
        default=None,
        description="The bot token (PERPTRADER__NOTIFY__TELEGRAM_TOKEN). None: read "
                    "token_file. Never printed: `config` shows it masked.")
    token_file: Path | None = Field(
        default=None,
        description="A file holding the token, mode 0600 (default "
                    "<data_dir>/secrets/telegram_token).")
    chat_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Chats that get alerts and whose commands are obeyed; every other "
                    "chat is ignored (env: comma-separated ids).")
    api_url: str | None = Field(
        default=None,
        description="Bot API base URL (None: https://api.telegram.org/bot); a local Bot "
                    "API server or the tests' fake, e.g. http://127.0.0.1:8081/bot.")
    poll_seconds: float = Field(default=2.0, gt=0, description="Journal poll interval.")
    updates_timeout: int = Field(default=10, ge=0,
                                 description="Long-poll timeout of getUpdates (seconds).")
    liquidation_margin_ratio: float = Field(
        default=0.8, gt=0, le=1,
        description="Alert when a position's maintenance margin over its margin balance "
                    "reaches this (1 = liquidation).")
    fills: bool = Field(default=True, description="Alert on every fill.")
    daily_summary: bool = Field(default=True,
                                description="Send a summary when a UTC day of bars closes.")
    heartbeat_file: Path | None = Field(
        default=None,
        description="Touched after every journal poll (a container healthcheck reads its "
                    "age); None: none.")

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v for v in (p.strip() for p in value.strip("[]").split(",")) if v]
        if isinstance(value, int):
            return [value]
        return value


class LoggingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: str = "INFO"
    json_file: Path | None = Field(
        default=None, description="JSON-lines log file; default <data_dir>/logs/perptrader.jsonl"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERPTRADER__",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("user_data")
    store: StoreSettings = StoreSettings()
    trading: TradingSettings = TradingSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    api: ApiSettings = ApiSettings()
    notify: NotifySettings = NotifySettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("PERPTRADER_CONFIG", "perptrader.toml"))
        check_keys(cls, toml_path, os.environ)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    @property
    def embedded_store_path(self) -> Path:
        return self.data_dir / "market.duckdb"

    @property
    def log_file(self) -> Path:
        return self.logging.json_file or self.data_dir / "logs" / "perptrader.jsonl"


def _section(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    ann = model.model_fields[key].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _nearest(key: str, valid: list[str]) -> str | None:
    found = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return found[0] if found else None


def unknown_keys(data: Mapping[str, Any], model: type[BaseModel] | None = None,
                 path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str | None]]:
    """(path of the unknown key, nearest valid name or None) for every key of ``data``
    that ``model`` (default: Settings) does not have, recursing into sections."""
    model = model or Settings
    out: list[tuple[tuple[str, ...], str | None]] = []
    valid = list(model.model_fields)
    for key, value in data.items():
        if key not in model.model_fields:
            out.append(((*path, key), _nearest(key, valid)))
            continue
        sub = _section(model, key)
        if sub is not None and isinstance(value, Mapping):
            out.extend(unknown_keys(value, sub, (*path, key)))
    return out


def _describe(path: tuple[str, ...], near: str | None, model: type[BaseModel], env: bool
              ) -> str:
    def name(parts: tuple[str, ...]) -> str:
        return ENV_PREFIX + "__".join(p.upper() for p in parts) if env else ".".join(parts)

    where = model
    for part in path[:-1]:
        where = _section(where, part) or where
    if near is not None:
        hint = f"did you mean {name((*path[:-1], near))}?"
    else:
        hint = f"valid here: {', '.join(name((*path[:-1], k)) for k in where.model_fields)}"
    return f"unknown setting {name(path)} ({hint})"


def check_keys(model: type[BaseModel], toml_path: Path, environ: Mapping[str, str]) -> None:
    """Refuse unknown keys in the TOML file and in ``PERPTRADER__`` variables."""
    problems: list[str] = []
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{toml_path}: not valid TOML ({exc})") from None
        problems += [f"{toml_path}: {_describe(p, n, model, env=False)}"
                     for p, n in unknown_keys(data, model)]
    for var, value in environ.items():
        if not var.upper().startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
            continue
        parts = tuple(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
        data: dict[str, Any] = {}
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        leaf: Any = value
        if value.lstrip().startswith("{"):  # a whole section as JSON
            try:
                leaf = json.loads(value)
            except ValueError:
                leaf = value
        node[parts[-1]] = leaf
        problems += [f"environment: {_describe(p, n, model, env=True)}"
                     for p, n in unknown_keys(data, model)]
    if problems:
        raise ConfigError("; ".join(problems))


def load_settings(**overrides: object) -> Settings:
    """Read the settings afresh (tests and the CLI call this; nothing is cached globally)."""
    return Settings(**overrides)  # type: ignore[arg-type]
