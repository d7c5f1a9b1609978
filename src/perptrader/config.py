"""One settings tree for the whole program.

Sources, highest priority first: keyword arguments, environment variables
(``PERPTRADER__SECTION__KEY``, e.g. ``PERPTRADER__STORE__URL``), the TOML file
(``perptrader.toml`` in the working directory, or the path in ``PERPTRADER_CONFIG``),
then the defaults below. Every artifact lives under ``data_dir`` so that one folder
holds a whole installation.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class StoreSettings(BaseModel):
    """Where market data is stored."""

    url: str | None = Field(
        default=None,
        description=(
            "None: the embedded DuckDB store under data_dir. "
            "postgresql://user@host:port/db: the PostgreSQL/TimescaleDB store."
        ),
    )


class ExchangeSettings(BaseModel):
    """Which exchange base URL backfills, collectors and brokers talk to."""

    url: str | None = Field(
        default=None,
        description="None: the venue's own URLs. http://127.0.0.1:8765: the local fake "
                    "exchange (`perptrader fake-exchange`).",
    )


class TradingSettings(BaseModel):
    """Where trading state (orders, fills, positions, audit log) is kept."""

    db_url: str | None = Field(
        default=None,
        description=(
            "None: SQLite (WAL) at <data_dir>/trading.sqlite, shareable by several "
            "processes. postgresql://user@host:port/db: PostgreSQL (the same migrations)."
        ),
    )


class LoggingSettings(BaseModel):
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


def load_settings(**overrides: object) -> Settings:
    """Read the settings afresh (tests and the CLI call this; nothing is cached globally)."""
    return Settings(**overrides)  # type: ignore[arg-type]
