"""The project's exceptions. Each says what went wrong and where, so a user can fix the input."""

from __future__ import annotations

from pathlib import Path


class PerptraderError(Exception):
    """Base class: an error the CLI reports as a message, not a traceback."""


class InputError(PerptraderError, ValueError):
    """A value the user gave (an option, an argument) that cannot be used: a symbol that
    is not one, an unknown timeframe, a date that does not parse. Still a ValueError, so
    callers that caught ValueError keep working; the CLI reports it in one line."""


class UnknownNameError(InputError, KeyError):
    """A name that is not in its catalogue (feature set, strategy, ...). Also a KeyError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataFormatError(PerptraderError):
    """Input data that cannot be imported. Names the file, the row and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.path:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")

    def with_path(self, path: Path | str) -> DataFormatError:
        """The same error, now naming the file it came from."""
        if self.path is not None:
            return self
        return DataFormatError(self.reason, path=path, row=self.row, field=self.field)


class UnknownFormatError(DataFormatError):
    """A file whose format, symbol or timeframe cannot be told from its name or content."""


class ConfigError(PerptraderError, ValueError):
    """A setting that cannot be used: an unknown key (with the nearest valid name) or a
    value that does not validate."""


class StoreError(PerptraderError):
    """The store could not be opened, migrated or written."""
