"""The dashboard in a real headless Chromium (Playwright): log in, watch fills and equity
arrive over the WebSocket while a paper replay runs in another process, press the kill
switch and see the engine halt, press it again and see trading resume - all without a
page reload.

Needs the `playwright` package and a Chromium binary (Debian: `apt-get install -y
chromium`; `PERPTRADER_CHROMIUM` names another one). Skipped, with the reason, without
them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.helpers import PASSWORD, USER
from perptrader.persistence import open_trading_db

CHROMIUM = os.environ.get("PERPTRADER_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright==1.65.2)"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or "
                              "set PERPTRADER_CHROMIUM)"),
]

REPLAY = ["trade", "paper", "--strategy", "sma_cross", "--param", "fast=5", "--param",
          "slow=30", "--symbol", "BTCUSDT", "--replay", "2024-01-03..2024-01-25",
          "--speed", "5", "--json"]


@pytest.fixture
def replay(market: Path, data_dir: Path):
    """A paced paper replay in another process (as `perptrader trade paper` would run)."""
    log = (data_dir / "replay.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "perptrader.cli", *REPLAY],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    db = data_dir / "trading.sqlite"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (data_dir / "replay.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the replay did not start"
        if db.exists():
            with open_trading_db(None, data_dir, create=False) as j:
                run = j.latest_run()
                if run is not None and j.balances(run["run_id"]):
                    break
        time.sleep(0.2)
    yield run["run_id"]
    proc.terminate()  # a paper run is crash-safe: it would resume from its checkpoint
    proc.wait(timeout=30)
    log.close()


def shoot(page, tmp_path: Path, name: str) -> Path:
    """A screenshot under the test's tmp_path (its path printed: `pytest -s` shows it);
    also copied into ``$PERPTRADER_SCREENSHOTS`` when set (docs/img for docs/operate.md)."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    target = os.environ.get("PERPTRADER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path


def test_dashboard_live_updates_and_kill_switch(server: str, replay: str, user,
                                                data_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            page.goto(server + "/")
            assert page.url.endswith("/dashboard/")
            expect(page.locator("#login-button")).to_be_visible()
            shots.append(shoot(page, tmp_path, "dashboard-login"))
            page.fill("#username", USER)
            page.fill("#password", "wrong password")
            page.click("#login-button")
            expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
            page.fill("#password", PASSWORD)
            page.click("#login-button")
            expect(page.locator("#ws-state")).to_have_text("live", timeout=15_000)
            expect(page.locator("#run-label")).to_contain_text(replay, timeout=15_000)
            page.evaluate("window.__sameDocument = 42")

            # equity points and fills arrive over the WebSocket while the replay runs
            chart = page.locator("#equity-chart")
            expect(chart).to_have_attribute("data-points", _regex_nonzero(), timeout=15_000)
            before = int(chart.get_attribute("data-points") or 0)
            # (function expressions: the dashboard's CSP forbids evaluating strings)
            page.wait_for_function(
                "(n) => Number(document.getElementById('equity-chart').dataset.points) >= n",
                arg=before + 16, timeout=30_000)
            page.wait_for_function(
                "() => Number(document.getElementById('fill-count').textContent) >= 1",
                timeout=60_000)
            expect(page.locator("#fills tbody tr").first).to_be_visible()
            expect(page.locator("#trading-state")).to_have_text("active")
            shots.append(shoot(page, tmp_path, "dashboard-live"))

            # the kill switch: the command is written at once, the engine applies it
            expect(page.locator("#kill-switch")).to_have_text("STOP trading")
            page.click("#kill-switch")
            expect(page.locator("#kill-switch-state")).to_contain_text("ON", timeout=10_000)
            expect(page.locator("#trading-state")).to_have_text("halted", timeout=20_000)
            expect(page.locator("#alerts")).to_contain_text("kill switch applied")
            shots.append(shoot(page, tmp_path, "dashboard-halted"))
            with httpx.Client(base_url=server) as http:
                pair = http.post("/api/v1/auth/login",
                                 json={"username": USER, "password": PASSWORD}).json()
                risk = http.get("/api/v1/risk", headers={
                    "Authorization": f"Bearer {pair['access_token']}"}).json()
            assert risk["trading_state"] == "halted" and risk["kill_switch"] is True

            # ... and resume
            expect(page.locator("#kill-switch")).to_have_text("RESUME trading")
            page.click("#kill-switch")
            expect(page.locator("#trading-state")).to_have_text("active", timeout=20_000)
            expect(page.locator("#kill-switch-state")).to_contain_text("off")
            assert page.evaluate("window.__sameDocument") == 42  # never reloaded
            assert not errors, errors
            shots.append(shoot(page, tmp_path, "dashboard-resumed"))
        finally:
            if len(shots) < 4:  # what the page looked like when it failed
                shoot(page, tmp_path, "dashboard-failure")
            browser.close()
    assert all(p.stat().st_size > 10_000 for p in shots), shots
    with open_trading_db(None, data_dir, create=False) as j:
        rows = j.audit_rows(replay, limit=None)
    kinds = [r["kind"] for r in rows]
    assert kinds.index("control.stop") < kinds.index("kill") < kinds.index("control.resume") \
        < kinds.index("resume")
    stop = next(r for r in rows if r["kind"] == "control.stop")
    assert '"by":"alice"' in stop["payload"].replace(" ", "")


def _regex_nonzero():
    import re

    return re.compile(r"^[1-9]\d*$")
