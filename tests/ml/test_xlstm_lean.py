"""The xLSTM layout knobs of ``ExpertConfig`` (mlstm_proj_factor, slstm_ffn_factor,
mlstm_heads): new models get the lean layout, a config saved before the knobs existed
loads as the layout it was trained with (the old one); new configs keep their layout
through save and load; the knobs reach the network and are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ml_frames import synthetic_ml_frame
from perptrader.ml.experts import ExpertConfig, XLSTMExpert
from perptrader.ml.nn.config import LEGACY_XLSTM_LAYOUT
from perptrader.ml.nn.networks import count_parameters

#: the layout every model saved before the knobs existed has (the xlstm package's
#: mLSTM up-projection 2, the sLSTM block's gated feed-forward 1.3, 4 mLSTM heads)
OLD_LAYOUT = {"mlstm_proj_factor": 2.0, "slstm_ffn_factor": 1.3, "mlstm_heads": 4}
LEAN = {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 1}


def _layout(cfg: ExpertConfig) -> dict[str, float]:
    return {key: getattr(cfg, key) for key in OLD_LAYOUT}


def test_the_legacy_layout_is_the_one_old_models_were_trained_with():
    assert LEGACY_XLSTM_LAYOUT == OLD_LAYOUT


def test_new_models_get_the_lean_layout():
    """The default since the layout knobs (measured: same macro-F1 within seed noise,
    ~1.6x the training speed on CPU; docs/ml.md)."""
    assert _layout(ExpertConfig()) == LEAN


@pytest.mark.parametrize("layout", [OLD_LAYOUT, LEAN])
def test_a_config_without_the_layout_keys_loads_as_the_old_layout(layout):
    """The dict of a config saved before the knobs existed lacks their keys: it must
    build the old layout, not whatever a new ExpertConfig() builds."""
    saved = ExpertConfig(d_model=32, **layout).to_dict()
    for key in OLD_LAYOUT:
        del saved[key]
    loaded = ExpertConfig.from_dict(saved)
    assert _layout(loaded) == OLD_LAYOUT
    assert loaded.d_model == 32  # the other keys are read as saved


def test_a_config_with_the_layout_keys_keeps_them():
    cfg = ExpertConfig(**LEAN)
    assert _layout(ExpertConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))) == LEAN


@pytest.mark.parametrize("bad", [{"mlstm_proj_factor": 0.0}, {"slstm_ffn_factor": -1.0},
                                 {"mlstm_heads": 0}])
def test_layout_values_are_checked(bad):
    with pytest.raises(ValueError):
        ExpertConfig(**bad)


def test_mlstm_heads_must_divide_the_inner_width():
    model = XLSTMExpert("pattern", ExpertConfig(d_model=64, mlstm_proj_factor=1.0,
                                                mlstm_heads=3, device="cpu"))
    with pytest.raises(ValueError, match="mlstm_heads"):
        model._build_net(10, torch.device("cpu"))


def test_the_lean_layout_reaches_the_network():
    """Narrower mLSTM, one mLSTM head, no sLSTM feed-forward: fewer parameters."""
    cpu = torch.device("cpu")
    old = XLSTMExpert("pattern", ExpertConfig(d_model=64, **OLD_LAYOUT))._build_net(10, cpu)
    lean = XLSTMExpert("pattern", ExpertConfig(d_model=64, **LEAN))._build_net(10, cpu)
    mlstm_old, slstm_old = old.core.blocks
    mlstm_lean, slstm_lean = lean.core.blocks
    assert slstm_old.ffn is not None and slstm_lean.ffn is None
    assert mlstm_old.xlstm.config._inner_embedding_dim == 128
    assert mlstm_lean.xlstm.config._inner_embedding_dim == 64
    assert mlstm_lean.xlstm.mlstm_cell.config.num_heads == 1
    assert count_parameters(lean) < count_parameters(old) / 1.5


def _saved_expert(folder: Path, cfg: ExpertConfig) -> tuple[XLSTMExpert, object]:
    """An expert with initialised (unfitted) weights saved to ``folder``; fitting adds
    nothing to what save/load must carry (shapes and values of the parameters)."""
    data = synthetic_ml_frame(n=400)
    model = XLSTMExpert("pattern", cfg)
    model.columns = model.input_columns(data)
    torch.manual_seed(3)
    model.net = model._build_net(model._source(data, torch.device("cpu")).n_inputs,
                                 torch.device("cpu"))
    model.net.eval()
    model.save(folder)
    return model, data


def test_a_model_saved_before_the_layout_knobs_loads_and_predicts_the_same(tmp_path: Path):
    """config.json without the layout keys (written before they existed): loads with the
    old layout's shapes and predicts what it did."""
    cfg = ExpertConfig(seq_len=16, d_model=64, n_blocks=2, slstm_at=(1,), embedding_dim=8,
                       device="cpu", cpu_threads=1, **OLD_LAYOUT)
    old, data = _saved_expert(tmp_path, cfg)
    meta = json.loads((tmp_path / "config.json").read_text())
    for key in OLD_LAYOUT:
        del meta["config"][key]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = XLSTMExpert.load(tmp_path)
    assert _layout(loaded.config) == OLD_LAYOUT
    rows = np.arange(len(data) - 50, len(data))
    np.testing.assert_allclose(loaded.predict_proba(data, rows),
                               old.predict_proba(data, rows), rtol=0, atol=1e-6)


def test_a_lean_model_saves_and_loads_as_lean(tmp_path: Path):
    cfg = ExpertConfig(seq_len=16, d_model=64, n_blocks=2, slstm_at=(1,), embedding_dim=8,
                       device="cpu", cpu_threads=1, **LEAN)
    lean, data = _saved_expert(tmp_path, cfg)
    loaded = XLSTMExpert.load(tmp_path)
    assert _layout(loaded.config) == LEAN
    rows = np.arange(len(data) - 50, len(data))
    np.testing.assert_allclose(loaded.predict_proba(data, rows),
                               lean.predict_proba(data, rows), rtol=0, atol=1e-6)
