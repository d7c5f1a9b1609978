"""Study files: the default recipe parses, the trial count is planned, and every bad key
or value is refused naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from perptrader.research.study import (
    DEFAULT_STUDY,
    StudyError,
    default_study,
    load_study,
    parse_study,
)

MINIMAL = """
[study]
name = "mini"
symbols = ["BTCUSDT"]
timeframes = ["1h"]
"""


def test_default_recipe() -> None:
    s = default_study()
    assert s.symbols == ("BTCUSDT", "ETHUSDT", "LTCUSDT")
    assert s.timeframes == ("1h", "4h")
    assert len(s.cells()) == 3 + 8  # 1h: three; 4h: three plus five
    assert [d.kind for d in s.decisions] == ["threshold", "cost_aware", "meta"]
    # 11 cells x 2 labels x 1 model x 3 decisions + 8 pooled symbols x 2 x 1 x 3 + two
    # agent trials (BTC and ETH 4h, three seeds each)
    assert s.planned_trials() == 11 * 6 + 8 * 6 + 2
    assert s.agents[0].seeds == (0, 1, 2)
    assert s.source == DEFAULT_STUDY


def test_defaults_fill_a_minimal_file() -> None:
    s = parse_study(MINIMAL)
    assert [lab.kind for lab in s.labels] == ["adaptive"]
    assert [m.kind for m in s.models] == ["lightgbm"]
    assert s.walkforward == {"1h": "train=365d,test=60d,valid=0.2"}
    assert s.planned_trials() == 1


@pytest.mark.parametrize(("extra", "message"), [
    ("[study]\nname='x'\nsymbols=['BTCUSDT']\nbogus=1", r"\[study\]: unknown key\(s\) \['bogus'\]"),
    ("[study]\nname='x y'\nsymbols=['BTCUSDT']", r"\[study\]\.name"),
    ("[study]\nname='x'\nsymbols='BTCUSDT'", r"\[study\]\.symbols: a list"),
    ("[study]\nname='x'\nsymbols=['BTCUSDT']\ntimeframes=['7q']", "unknown timeframe '7q'"),
    ("[study]\nname='x'\nsymbols=['BTCUSDT']\nstart='2025-01-01'\nend='2024-01-01'",
     "start 2025-01-01 is not before end"),
    ("[study]\nname='x'\nsymbols=['BTCUSDT']\nlockbox='soon'", r"\.lockbox"),
    (MINIMAL + "[walkforward]\n'1h'='train=abc'", r"\[walkforward\]\.1h"),
    (MINIMAL + "[walkforward]\n'4h'='train=30d,test=5d'", r"unknown key\(s\) \['4h'\]"),
    (MINIMAL + "[costs]\ntaker_fee=-1", r"\[costs\]"),
    (MINIMAL + "[[labels]]\nname='a'\nkind='fancy'", r"\[\[labels\]\]\[0\]\.kind"),
    (MINIMAL + "[[labels]]\nname='a'\nhorizon=0", r"\[\[labels\]\]\[0\]\.horizon"),
    (MINIMAL + "[[labels]]\nname='a'\n[[labels]]\nname='a'", "names repeat"),
    (MINIMAL + "[[models]]\nname='m'\nkind='svm'", r"\[\[models\]\]\[0\]\.kind"),
    (MINIMAL + "[[decisions]]\nname='d'\nkind='threshold'\nthreshold=2",
     "a probability in"),
    (MINIMAL + "[[decisions]]\nname='d'\nkind='cost_aware'\ngrid={speed=[1]}",
     r"\.grid: a table with keys among"),
    (MINIMAL + "[pooled]\nenabled=true\ntimeframe='4h'", r"\[pooled\]\.timeframe"),
    (MINIMAL + "[pooled]\nenabled=true\ntimeframe='1h'\ntrain_symbols=['BTCUSDT']",
     "pooling needs >= 2"),
    (MINIMAL + "[[agents]]\nname='a'\nseeds=[]", r"\.seeds: a non-empty list"),
    ("[study\nname=", "not valid TOML"),
])
def test_bad_study_files_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(StudyError, match=message) as exc:
        parse_study(extra, "s.toml")
    assert str(exc.value).startswith("s.toml")


def test_load_study_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="cannot read the study file"):
        load_study(tmp_path / "missing.toml")
