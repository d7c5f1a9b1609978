"""``perptrader users add|remove|list``: the API's users (``<data_dir>/users.sqlite``)."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from perptrader.commands.common import console, print_json, settings, user_errors

app = typer.Typer(help="API users (argon2 password hashes in <data_dir>/users.sqlite).",
                  no_args_is_help=True)


def _store():  # type: ignore[no-untyped-def]
    from perptrader.api.users import UserStore

    return UserStore.in_data_dir(settings().data_dir)


@app.command("add")
def add(
    username: str = typer.Argument(..., help="Letters, digits, '.', '_', '@', '-'."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password from stdin (scripts)."),
    replace: bool = typer.Option(False, "--replace", help="Set a new password for an "
                                 "existing user (revokes their refresh tokens)."),
) -> None:
    """Add a user (the password is prompted for twice unless --password-stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with user_errors():
        _store().add(username, password, replace=replace)
    console.print(f"user {username} {'updated' if replace else 'added'}")


@app.command("remove")
def remove(username: str = typer.Argument(...)) -> None:
    """Remove a user; their tokens stop working at once."""
    with user_errors():
        _store().remove(username)
    console.print(f"user {username} removed")


@app.command("list")
def list_users(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The users (names and creation times; never the hashes)."""
    import pandas as pd

    with user_errors():
        rows = _store().list()
    for r in rows:
        r["created_at"] = pd.Timestamp(r["created_at"], unit="s", tz="UTC").isoformat()
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"API users ({len(rows)})")
    table.add_column("username")
    table.add_column("created")
    for r in rows:
        table.add_row(r["username"], r["created_at"])
    console.print(table)
