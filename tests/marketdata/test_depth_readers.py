"""Order-book file readers: hftbacktest captures, nautilus depth CSV/parquet, Tardis CSV.

Unit tests write small files by hand; integration tests read ../shared/data (skipped when
absent). Every dataset a reader yields must pass ``validate``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.marketdata.bookcheck import check_book_against_ticker
from perptrader.marketdata.dataset import Dataset, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.depth_capture import DepthCaptureReader
from perptrader.marketdata.sources.files import read_head
from perptrader.marketdata.sources.nautilus import NautilusReader
from perptrader.marketdata.sources.tardis import TardisReader
from shared_data import real_file, shared_data_dir

NO_HINTS = ImportHints()


def read_all(reader, path: Path, hints: ImportHints = NO_HINTS) -> dict[Kind, Dataset]:
    out = {}
    for ds in reader.read(path, hints):
        assert validate(ds).rows == ds.rows  # already canonical
        out[ds.kind] = ds
    return out


# -- hftbacktest captures -----------------------------------------------------------------


def _line(local_ts: int, stream: str | None, data: dict) -> str:
    return f"{local_ts} {json.dumps({'stream': stream, 'data': data} if stream else data)}"


def _diff(U, u, pu, b, a, t, spot=False) -> dict:
    d = {"e": "depthUpdate", "E": t + 2, "s": "ETHUSDT", "U": U, "u": u, "b": b, "a": a}
    if not spot:
        d.update(T=t, pu=pu)
    return d


def write_gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def usdm_capture(tmp_path: Path, name: str = "ethusdt_20240718.gz") -> Path:
    d = "ethusdt@depth@0ms"
    return write_gz(
        tmp_path / name,
        [
            _line(1, d, _diff(90, 99, 89, [["10.0", "9"]], [], 1_000)),  # stale
            _line(
                2,
                None,
                {
                    "lastUpdateId": 100,
                    "E": 1_001,
                    "T": 1_001,
                    "bids": [["10.0", "1"], ["9.9", "2"]],
                    "asks": [["10.1", "3"]],
                },
            ),
            _line(3, d, _diff(95, 105, 94, [["10.0", "1.5"]], [], 1_002)),
            _line(4, d, _diff(106, 110, 105, [], [["10.2", "4"]], 1_500)),  # last of second 1
            _line(
                5,
                "ethusdt@trade",
                {
                    "e": "trade",
                    "E": 1_600,
                    "T": 1_599,
                    "s": "ETHUSDT",
                    "t": 7,
                    "p": "10.05",
                    "q": "0.5",
                    "X": "MARKET",
                    "m": True,
                },
            ),
            _line(
                6,
                "ethusdt@aggTrade",
                {
                    "e": "aggTrade",
                    "E": 1_700,
                    "T": 1_700,
                    "s": "ETHUSDT",
                    "a": 3,
                    "f": 8,
                    "l": 9,
                    "p": "10.1",
                    "q": "1.0",
                    "m": False,
                },
            ),
            _line(
                7,
                "ethusdt@bookTicker",
                {
                    "e": "bookTicker",
                    "u": 110,
                    "s": "ETHUSDT",
                    "b": "10.0",
                    "B": "1.5",
                    "a": "10.1",
                    "A": "3",
                },
            ),
            _line(8, d, _diff(111, 111, 110, [["9.9", "0"]], [], 2_100)),  # second 2
        ],
    )


def test_capture_reader_rebuilds_and_samples_the_book(tmp_path: Path) -> None:
    path = usdm_capture(tmp_path)
    reader = DepthCaptureReader(depth=3)
    assert reader.can_read(path, read_head(path))
    out = read_all(reader, path)
    book = out[Kind.BOOK]
    assert (book.instrument.exchange, book.instrument.market, book.instrument.symbol) == (
        "binance",
        "perp",
        "ETHUSDT",
    )
    f = book.frame
    assert f["update_id"].drop_duplicates().tolist() == [110, 111]
    first = f[f["update_id"] == 110]
    assert first["bid_price"].tolist() == [10.0, 9.9]
    assert first["bid_qty"].tolist() == [1.5, 2.0]
    assert first["ask_price"].tolist() == [10.1, 10.2]
    assert str(first["ts"].iloc[0]) == "1970-01-01 00:00:01.500000+00:00"  # T, not local
    assert f[f["update_id"] == 111]["bid_price"].dropna().tolist() == [10.0]  # 9.9 deleted
    assert f.index.unique().tolist() == [4, 8]  # file lines of the diffs
    trades = out[Kind.TRADES].frame
    assert trades["trade_id"].tolist() == [7, 8]  # aggTrade keyed by its first trade id
    assert trades["side"].tolist() == ["sell", "buy"]  # m (buyer is maker) -> sell
    assert trades["last_trade_id"].tolist()[1] == 9 and pd.isna(trades["last_trade_id"][5])
    assert trades["price"].tolist() == [10.05, 10.1]


def test_capture_market_is_told_from_content_not_folder(tmp_path: Path) -> None:
    folder = tmp_path / "usdm"
    folder.mkdir()
    d = "btcusdt@depth@100ms"
    path = write_gz(
        folder / "btcusdt_20230405.dat.gz",
        [
            _line(1, None, {"lastUpdateId": 100, "bids": [["10", "1"]], "asks": [["11", "1"]]}),
            _line(2, d, _diff(99, 103, None, [["10.5", "1"]], [], 1_000, spot=True)),
            _line(3, d, _diff(104, 104, None, [], [["10.8", "1"]], 2_000, spot=True)),
        ],
    )
    out = read_all(DepthCaptureReader(sample_ms=0), path)
    assert out[Kind.BOOK].instrument.market == "spot"
    assert out[Kind.BOOK].frame["update_id"].drop_duplicates().tolist() == [103, 104]
    only = read_all(DepthCaptureReader(), path, ImportHints(kind=Kind.BOOK))
    assert set(only) == {Kind.BOOK}
    hinted = read_all(DepthCaptureReader(), path, ImportHints(market="perp", symbol="XBT"))
    assert hinted[Kind.BOOK].instrument.market == "perp"
    assert hinted[Kind.BOOK].instrument.symbol == "XBT"


def test_capture_day_file_is_seeded_from_the_previous_day(tmp_path: Path) -> None:
    usdm_capture(tmp_path, "ethusdt_20240718.gz")
    d = "ethusdt@depth@0ms"
    nxt = write_gz(
        tmp_path / "ethusdt_20240719.gz",
        [
            _line(9, d, _diff(112, 115, 111, [["10.0", "0.25"]], [], 3_000)),
        ],
    )
    book = read_all(DepthCaptureReader(), nxt)[Kind.BOOK]
    assert any("ethusdt_20240718.gz" in n for n in book.notes)
    assert book.frame["bid_qty"].tolist()[0] == 0.25 and book.frame["update_id"].iloc[0] == 115
    with pytest.raises(DataFormatError, match="neither a usable book nor trades"):
        list(DepthCaptureReader(chain_previous=False).read(nxt, NO_HINTS))


def test_capture_gap_then_resync(tmp_path: Path) -> None:
    """A lost diff stops the book; rows resume after the next snapshot, and the state just
    before the gap is still kept (it was complete for its own update id)."""
    d = "ethusdt@depth@0ms"
    snap = {
        "lastUpdateId": 100,
        "E": 1_000,
        "T": 1_000,
        "bids": [["10.0", "1"]],
        "asks": [["10.1", "1"]],
    }
    path = write_gz(
        tmp_path / "ethusdt_20240101.gz",
        [
            _line(1, None, snap),
            _line(2, d, _diff(95, 105, 94, [["10.0", "2"]], [], 1_100)),
            _line(3, d, _diff(108, 110, 107, [["10.0", "3"]], [], 1_200)),  # pu 107: gap
            _line(4, d, _diff(111, 120, 110, [["10.0", "4"]], [], 5_000)),  # held
            _line(
                5,
                None,
                {**snap, "lastUpdateId": 115, "T": 5_100, "E": 5_100, "bids": [["10.0", "5"]]},
            ),  # catches up with 111..120
            _line(6, d, _diff(121, 125, 120, [["10.0", "6"]], [], 6_000)),
        ],
    )
    book = read_all(DepthCaptureReader(sample_ms=0), path)[Kind.BOOK]
    assert book.frame["update_id"].tolist() == [100, 105, 120, 125]
    assert book.frame["bid_qty"].tolist() == [1.0, 2.0, 4.0, 6.0]
    assert any("1 gap(s)" in n for n in book.notes)
    rep = check_book_against_ticker(path)
    assert rep.gaps == 1 and rep.snapshots == 2 and rep.resyncs == 1 and rep.in_sync_at_end


def test_capture_bad_values_name_the_line_and_field(tmp_path: Path) -> None:
    d = "ethusdt@depth@0ms"
    bad_price = write_gz(
        tmp_path / "ethusdt_20240101.gz",
        [
            _line(1, None, {"lastUpdateId": 100, "T": 1, "bids": [], "asks": []}),
            _line(2, d, _diff(95, 105, 94, [["10.0", "1"]], [["ten", "1"]], 5)),
        ],
    )
    with pytest.raises(DataFormatError) as err:
        list(DepthCaptureReader().read(bad_price, NO_HINTS))
    assert (err.value.row, err.value.field) == (2, "a")
    assert err.value.path == str(bad_price)

    bad_trade = write_gz(
        tmp_path / "ethusdt_20240102.gz",
        [
            _line(
                1, "ethusdt@trade", {"e": "trade", "T": 1, "t": 1, "p": "x", "q": "1", "m": True}
            ),
        ],
    )
    with pytest.raises(DataFormatError) as err:
        list(DepthCaptureReader().read(bad_trade, NO_HINTS))
    assert (err.value.row, err.value.field) == (1, "price")

    early = write_gz(
        tmp_path / "ethusdt_20240104.gz",
        [
            _line(1, d, _diff(95, 105, 94, [["10.0", "-1"]], [], 5)),  # held for the snapshot
            _line(2, None, {"lastUpdateId": 100, "T": 6, "bids": [], "asks": []}),
        ],
    )
    with pytest.raises(DataFormatError) as err:
        list(DepthCaptureReader().read(early, NO_HINTS))
    assert (err.value.row, err.value.field) == (1, "b")

    not_json = write_gz(
        tmp_path / "ethusdt_20240103.gz",
        [
            _line(
                1, "ethusdt@trade", {"e": "trade", "T": 1, "t": 1, "p": "1", "q": "1", "m": True}
            ),
            '2 {"stream": "ethusdt@trade", "data": {',
        ],
    )
    with pytest.raises(DataFormatError) as err:
        list(DepthCaptureReader().read(not_json, NO_HINTS))
    assert err.value.row == 2


def test_capture_reader_refuses_other_text(tmp_path: Path) -> None:
    other = tmp_path / "x.gz"
    other.write_bytes(gzip.compress(b"time,price\n1,2\n"))
    assert not DepthCaptureReader().can_read(other, read_head(other))


def test_hyperliquid_capture_snapshots_and_trades(tmp_path: Path) -> None:
    def book(t: int, bid: str) -> str:
        levels = [[{"px": bid, "sz": "1.5", "n": 2}], [{"px": "101.0", "sz": "2", "n": 1}]]
        return json.dumps(
            {"channel": "l2Book", "data": {"coin": "BTC", "time": t, "levels": levels}}
        )

    trade = {
        "coin": "BTC",
        "side": "A",
        "px": "100.0",
        "sz": "0.1",
        "time": 1_200,
        "tid": 55,
        "hash": "0x0",
        "users": [],
    }
    later = {**trade, "tid": 56, "side": "B"}
    path = write_gz(
        tmp_path / "btcusd_20250126.gz",
        [
            f"1 {book(1_000, '100.0')}",
            f"2 {book(1_000, '100.0')}",  # the same snapshot twice
            f"3 {json.dumps({'channel': 'trades', 'data': [trade]})}",
            f"4 {json.dumps({'channel': 'trades', 'data': [trade, later]})}",  # 55 repeated
            f"5 {book(2_500, '100.5')}",
        ],
    )
    reader = DepthCaptureReader()
    assert reader.can_read(path, read_head(path))
    out = read_all(reader, path)
    assert out[Kind.BOOK].instrument.exchange == "hyperliquid"
    assert out[Kind.BOOK].instrument.symbol == "BTCUSD"
    assert out[Kind.BOOK].frame["bid_price"].tolist() == [100.0, 100.5]
    trades = out[Kind.TRADES].frame
    assert trades["trade_id"].tolist() == [55, 56] and trades["side"].tolist() == ["sell", "buy"]


# -- nautilus -----------------------------------------------------------------------------

DEPTH_HEADER = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu"


def write_depth(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([DEPTH_HEADER, *rows]) + "\n")
    return path


def nautilus_pair(tmp_path: Path, first_id: int = 95) -> tuple[Path, Path]:
    snap = write_depth(
        tmp_path / "btcusdt-depth-snap.csv",
        [
            "BTCUSDT,1000,100,100,b,snap,20.0,1.0,-1",
            "BTCUSDT,1000,100,100,b,snap,19.9,2.0,-1",
            "BTCUSDT,1000,100,100,a,snap,20.1,3.0,-1",
        ],
    )
    upd = write_depth(
        tmp_path / "btcusdt-depth-update.csv",
        [
            f"BTCUSDT,1500,{first_id},105,a,set,20.1,0.000,94",
            f"BTCUSDT,1500,{first_id},105,a,set,20.2,1.5,94",
            "BTCUSDT,2500,106,107,b,set,20.05,0.7,105",
        ],
    )
    return snap, upd


def test_nautilus_snapshot_alone_gives_one_book(tmp_path: Path) -> None:
    snap, _ = nautilus_pair(tmp_path)
    reader = NautilusReader()
    assert reader.can_read(snap, read_head(snap))
    book = read_all(reader, snap)[Kind.BOOK]
    assert book.frame["bid_price"].tolist() == [20.0, 19.9]
    assert book.frame["ask_price"].tolist()[0] == 20.1
    assert book.frame["update_id"].unique().tolist() == [100]


def test_nautilus_updates_replay_on_the_snapshot_beside_them(tmp_path: Path) -> None:
    _, upd = nautilus_pair(tmp_path)
    f = read_all(NautilusReader(), upd)[Kind.BOOK].frame
    assert f["update_id"].drop_duplicates().tolist() == [105, 107]
    assert f[f["update_id"] == 105]["ask_price"].tolist()[0] == 20.2  # 20.1 deleted
    assert f[f["update_id"] == 107]["bid_price"].tolist() == [20.05, 20.0, 19.9]


def test_nautilus_updates_need_their_snapshot_and_must_join_it(tmp_path: Path) -> None:
    snap, upd = nautilus_pair(tmp_path, first_id=102)  # 102 > lastUpdateId 100
    with pytest.raises(DataFormatError, match="do not continue the snapshot") as err:
        list(NautilusReader().read(upd, NO_HINTS))
    assert (err.value.row, err.value.field) == (2, "first_update_id")
    snap.unlink()
    with pytest.raises(UnknownFormatError, match=r"btcusdt-depth-snap\.csv"):
        list(NautilusReader().read(upd, NO_HINTS))


def test_nautilus_bad_price_names_row_and_field(tmp_path: Path) -> None:
    path = write_depth(
        tmp_path / "btcusdt-depth-snap.csv",
        [
            "BTCUSDT,1000,100,100,b,snap,20.0,1.0,-1",
            "BTCUSDT,1000,100,100,b,snap,abc,2.0,-1",
        ],
    )
    with pytest.raises(DataFormatError) as err:
        list(NautilusReader().read(path, NO_HINTS))
    assert (err.value.row, err.value.field) == (3, "price")


def test_nautilus_parquet_quotes_and_trades(tmp_path: Path) -> None:
    ts = pd.to_datetime([1_000, 1_000, 2_000], unit="ms", utc=True)
    quotes = tmp_path / "btcusdt-quotes.parquet"
    pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "ask_size": [1.0, 2.0, 3.0],
            "ask": [10.1, 10.2, 10.3],
            "bid_size": [1.0, 1.0, 1.0],
            "bid": [10.0, 10.0, 10.1],
        }
    ).to_parquet(quotes)
    trades = tmp_path / "btcusdt-trades.parquet"
    pd.DataFrame(
        {
            "timestamp": ts,
            "trade_id": [1, 2, 3],
            "price": [10.0, 10.1, 10.2],
            "quantity": [0.1, 0.2, 0.3],
            "buyer_maker": ["True", "False", "True"],
        }
    ).to_parquet(trades)
    reader = NautilusReader()
    assert reader.can_read(quotes, read_head(quotes)) and reader.can_read(trades, b"PAR1")
    q = read_all(reader, quotes)[Kind.BOOK]
    assert q.instrument.market == "spot"  # BTC/USDT without :USDT
    assert q.frame["ask_price"].tolist() == [10.2, 10.3]  # last quote of each instant
    t = read_all(reader, trades)[Kind.TRADES]
    assert t.instrument.market == "spot" and t.instrument.symbol == "BTCUSDT"
    assert t.frame["side"].tolist() == ["sell", "buy", "sell"]


# -- Tardis -------------------------------------------------------------------------------


def test_tardis_book_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "binance-futures_book_snapshot_2_BTCUSDT.csv"
    path.write_text(
        "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
        "bids[0].price,bids[0].amount,asks[1].price,asks[1].amount,bids[1].price,"
        "bids[1].amount\n"
        "binance-futures,BTCUSDT,1598918403696000,1598918403810979,11,1,10,2,12,3,,\n"
    )
    reader = TardisReader()
    assert reader.can_read(path, read_head(path))
    ds = read_all(reader, path)[Kind.BOOK]
    assert (ds.instrument.exchange, ds.instrument.market) == ("binance", "perp")
    assert ds.frame["level"].tolist() == [0, 1]
    assert ds.frame["bid_price"].isna().tolist() == [False, True]
    assert str(ds.frame["ts"].iloc[0]) == "2020-09-01 00:00:03.696000+00:00"


def test_tardis_quotes_trades_and_incremental(tmp_path: Path) -> None:
    quotes = tmp_path / "huobi-dm-swap_quotes_BTC-USD.csv"
    quotes.write_text(
        "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,"
        "bid_price,bid_amount\n"
        "huobi-dm-swap,BTC-USD,1588291201099000,1588291201234268,5,8629.3,"
        "8629.2,806\n"
    )
    q = read_all(TardisReader(), quotes)[Kind.BOOK]
    assert (q.instrument.exchange, q.instrument.symbol) == ("huobi", "BTCUSD")
    assert q.frame["bid_qty"].tolist() == [806.0]

    trades = tmp_path / "bitmex_trades_XBTUSD.csv"
    trades.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        "bitmex,XBTUSD,1583020803145000,1,ccc3c1fa-212c,sell,8531.5,2152\n"
        "bitmex,XBTUSD,1583020803145000,1,b46c84da-6942,unknown,8531.5,1\n"
    )
    t = read_all(TardisReader(), trades)[Kind.TRADES]
    assert t.instrument.exchange == "bitmex" and t.frame["trade_id"].nunique() == 2
    assert t.frame["side"].isna().sum() == 1
    again = read_all(TardisReader(), trades)[Kind.TRADES]
    assert again.frame["trade_id"].tolist() == t.frame["trade_id"].tolist()  # stable ids

    inc = tmp_path / "deribit_incremental_book_L2_BTC-PERPETUAL.csv"
    inc.write_text(
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
        "deribit,BTC-PERPETUAL,1000000,1,false,bid,6400,5\n"  # before a snapshot
        "deribit,BTC-PERPETUAL,2000000,1,true,ask,6421.5,100\n"
        "deribit,BTC-PERPETUAL,2000000,1,true,bid,6421,50\n"
        "deribit,BTC-PERPETUAL,2500000,1,false,ask,6421.5,0\n"
        "deribit,BTC-PERPETUAL,2500000,1,false,ask,6422,30\n"
        "deribit,BTC-PERPETUAL,3100000,1,false,bid,6421,0\n"
    )
    b = read_all(TardisReader(), inc)[Kind.BOOK]
    assert b.instrument.symbol == "BTCPERPETUAL"
    assert any("skipped" in n for n in b.notes)
    assert b.frame["ask_price"].tolist() == [6422.0, 6422.0]  # seconds 2 and 3
    assert b.frame["bid_price"].isna().tolist() == [False, True]


def test_tardis_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bitmex_trades_XBTUSD.csv"
    bad.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        "bitmex,XBTUSD,1583020803145000,1,1,sell,8531.5,2\n"
        "bitmex,XBTUSD,1583020803145000,1,2,sell,oops,2\n"
    )
    with pytest.raises(DataFormatError) as err:
        list(TardisReader().read(bad, NO_HINTS))
    assert (err.value.row, err.value.field) == (3, "price")
    venue = tmp_path / "mystery_trades_X.csv"
    venue.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nmystery,X,1,1,1,sell,1,1\n"
    )
    with pytest.raises(UnknownFormatError, match="not mapped"):
        list(TardisReader().read(venue, NO_HINTS))
    dated = tmp_path / "deribit_trades.csv"
    dated.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        "deribit,BTC-25SEP20,1,1,1,sell,1,1\n"
    )
    with pytest.raises(UnknownFormatError, match="not a perpetual"):
        list(TardisReader().read(dated, NO_HINTS))


# -- integration: the real files -------------------------------------------------------------

CAPTURES = {  # file -> (market, book samples expected at least, trades)
    "usdm/btcusdt_20230404.dat.gz": ("perp", 90, 2197),
    "usdm/btcusdt_20230405.dat.gz": ("perp", 400, 10738),
    "usdm/btcusdt_20240718.gz": ("perp", 170, 974),
    "usdm/btcusdt_20240719.gz": ("perp", 290, 9727),
    "usdm/ethusdt_20240718.gz": ("perp", 170, 1640),
    "usdm/ethusdt_20240719.gz": ("perp", 290, 12015),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_real_usdm_captures(name: str) -> None:
    market, samples, trades = CAPTURES[name]
    path = real_file(f"orderbook/hftbacktest/{name}")
    reader = DepthCaptureReader()
    assert reader.can_read(path, read_head(path))
    out = read_all(reader, path)
    book = out[Kind.BOOK]
    assert book.instrument.market == market
    f = book.frame
    assert f.groupby("ts").ngroups >= samples
    assert (f.groupby("ts")["level"].max() == 19).all()  # a full top 20 every time
    top = f[f["level"] == 0]
    assert (top["bid_price"] < top["ask_price"]).all()  # never crossed
    assert out[Kind.TRADES].rows == trades


@pytest.mark.integration
def test_real_spot_capture_gives_trades_but_no_book() -> None:
    path = real_file("orderbook/hftbacktest/spot/btcusdt_20230405.dat.gz")
    out = read_all(DepthCaptureReader(), path)
    assert set(out) == {Kind.TRADES} and out[Kind.TRADES].instrument.market == "spot"
    assert out[Kind.TRADES].rows == 3144
    assert any("no order book" in n for n in out[Kind.TRADES].notes)


@pytest.mark.integration
def test_real_hyperliquid_capture() -> None:
    path = real_file("orderbook/hftbacktest/hyperliquid/btcusd_20250126.gz")
    out = read_all(DepthCaptureReader(), path)
    assert out[Kind.BOOK].instrument.exchange == "hyperliquid"
    assert out[Kind.BOOK].frame.groupby("ts").ngroups >= 20
    assert out[Kind.TRADES].rows > 0


@pytest.mark.integration
def test_real_nautilus_files() -> None:
    folder = "orderbook/nautilus/binance"
    snap = read_all(NautilusReader(), real_file(f"{folder}/btcusdt-depth-snap.csv"))
    assert snap[Kind.BOOK].rows == 20  # bids only: the sample snapshot has no asks
    # the sample update file is 10 minutes younger than the snapshot: it cannot join it
    with pytest.raises(DataFormatError, match="do not continue the snapshot"):
        list(NautilusReader().read(real_file(f"{folder}/btcusdt-depth-update.csv"), NO_HINTS))
    quotes = read_all(NautilusReader(), real_file(f"{folder}/btcusdt-quotes.parquet"))
    assert quotes[Kind.BOOK].instrument.market == "spot" and quotes[Kind.BOOK].rows == 428
    trades = read_all(NautilusReader(), real_file(f"{folder}/btcusdt-trades.parquet"))
    assert trades[Kind.TRADES].rows == 2001


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "kind", "exchange", "rows"),
    [
        ("binance-futures_book_snapshot_25_BTCUSDT.csv", Kind.BOOK, "binance", 250),
        ("binance-futures_book_snapshot_5_BTCUSDT.csv", Kind.BOOK, "binance", 50),
        ("bitmex_trades_XBTUSD.csv", Kind.TRADES, "bitmex", 10),
        ("deribit_incremental_book_L2_BTC-PERPETUAL.csv", Kind.BOOK, "deribit", 15),
        ("huobi-dm-swap_quotes_BTC-USD.csv", Kind.BOOK, "huobi", 10),
    ],
)
def test_real_tardis_files(name: str, kind: Kind, exchange: str, rows: int) -> None:
    out = read_all(TardisReader(), real_file(f"orderbook/tardis/{name}"))
    assert out[kind].instrument.exchange == exchange and out[kind].rows == rows
    assert out[kind].instrument.market == "perp"


@pytest.mark.integration
def test_registry_routes_order_book_files_to_these_readers() -> None:
    from perptrader.marketdata.sources.registry import file_readers, reader_for

    root = shared_data_dir() / "orderbook"
    if not root.exists():
        pytest.skip(f"real data absent: {root} (set PERPTRADER_SHARED_DATA)")
    readers = file_readers()
    for sub, cls in (
        ("hftbacktest", DepthCaptureReader),
        ("nautilus", NautilusReader),
        ("tardis", TardisReader),
    ):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                assert isinstance(reader_for(path, readers), cls), path
