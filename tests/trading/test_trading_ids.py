"""Client order ids: deterministic, unique, short enough and legal on Binance and Bybit."""

from __future__ import annotations

import re

import pytest

from perptrader.trading.ids import (
    BINANCE_ID_PATTERN,
    MAX_LEN,
    client_order_id,
    fill_id,
    is_ours,
    parse_client_order_id,
    run_tag,
)

#: Bybit orderLinkId: up to 36 characters, letters, digits, dash and underscore
BYBIT = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def test_ids_unique_short_legal_and_parse_back() -> None:
    ids = [client_order_id("paper-2024-01-01T00:00:00Z", seq) for seq in range(100_000)]
    assert len(set(ids)) == len(ids)
    tag = run_tag("paper-2024-01-01T00:00:00Z")
    for seq in (0, 1, 35, 36, 99_999):
        text = ids[seq]
        assert len(text) <= MAX_LEN
        assert BINANCE_ID_PATTERN.match(text) and BYBIT.match(text)
        assert parse_client_order_id(text) == (tag, seq)
    assert all(BINANCE_ID_PATTERN.match(t) and BYBIT.match(t) for t in ids[::997])


def test_ids_deterministic_and_runs_differ() -> None:
    assert client_order_id("run-a", 7) == client_order_id("run-a", 7)
    assert client_order_id("run-a", 7) != client_order_id("run-b", 7)
    assert run_tag("run-a") != run_tag("run-b")
    assert len(run_tag("x" * 1000)) == 10
    a = {client_order_id(f"run-{i}", s) for i in range(200) for s in range(50)}
    assert len(a) == 200 * 50
    assert client_order_id("run-a", 0) == f"pt-{run_tag('run-a')}-0"


def test_largest_seq_fits_and_larger_refused() -> None:
    big = 36**22 - 1
    text = client_order_id("r", big)
    assert len(text) == MAX_LEN and BINANCE_ID_PATTERN.match(text)
    assert parse_client_order_id(text) == (run_tag("r"), big)
    with pytest.raises(ValueError, match="too large"):
        client_order_id("r", 36**22)


@pytest.mark.parametrize("bad", [-1, 1.0, True, "3"])
def test_bad_seq_refused(bad) -> None:
    with pytest.raises(ValueError):
        client_order_id("r", bad)


def test_empty_run_refused() -> None:
    with pytest.raises(ValueError):
        client_order_id("", 1)


@pytest.mark.parametrize("text", [
    "web_123", "x-abc", "", "pt-ABCDEFGHIJ-1", "pt-abcdefghij-01", "pt-abcdefghi-1",
    "pt-abcdefghij-", "pt-abcdefghij-1-2", "pt-abcdefgh18-1", "android_Xyz", None,
])
def test_external_ids_are_not_ours(text) -> None:
    assert parse_client_order_id(text) is None
    assert not is_ours(text)


def test_is_ours_by_run() -> None:
    text = client_order_id("run-a", 3)
    assert is_ours(text) and is_ours(text, "run-a") and not is_ours(text, "run-b")


def test_fill_ids() -> None:
    coid = client_order_id("run-a", 3)
    assert fill_id(coid, 1) == fill_id(coid, 1)
    assert len({fill_id(coid, n) for n in range(1, 1000)}) == 999
    assert fill_id(coid, 1) != fill_id(client_order_id("run-a", 4), 1)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            fill_id(coid, bad)
