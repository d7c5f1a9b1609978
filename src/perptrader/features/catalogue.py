"""The feature catalogue as data (``features list --json``) and as docs/features.md
(``features list --markdown``), generated from the family specs so the documentation
cannot drift from the code (a test compares the committed file with this output)."""

from __future__ import annotations

from typing import Any

from perptrader.features.base import Family
from perptrader.features.registry import all_families
from perptrader.features.sets import FEATURE_SETS, FeatureSet


def _family_entry(family: Family) -> dict[str, Any]:
    return {
        "name": family.name,
        "description": family.description,
        "requires": list(family.requires),
        "warmup": family.warmup,
        "history": family.history,
        "features": [{"name": s.name, "formula": s.formula, "inputs": list(s.inputs),
                      "warmup": s.warmup, "history": s.history} for s in family.specs],
    }


def catalogue(feature_set: FeatureSet | None = None) -> dict[str, Any]:
    families = all_families()
    names = list(families)
    if feature_set is not None:
        wanted = set(feature_set.families) | set(feature_set.book_families)
        names = [n for n in names if n in wanted]
    sets = FEATURE_SETS.values() if feature_set is None else [feature_set]
    return {
        "families": [_family_entry(families[n]) for n in names],
        "sets": [{"name": s.name, "description": s.description, "families": list(s.families),
                  "book_families": list(s.book_families),
                  "higher": {tf: list(f) for tf, f in s.higher},
                  "min_coverage": s.min_coverage} for s in sets],
    }


_INTRO = """# Feature catalogue

Generated from the code by `perptrader features list --markdown > docs/features.md`;
a test fails when this file and the code disagree. Every feature obeys the contract of
`src/perptrader/features/base.py`:

- **No look-ahead**: the value at bar t uses bars up to and including t only (the bar
  row is known at its close). `perptrader features lookahead-check` proves it on real
  data by recomputing on truncated histories.
- **Start invariance**: after *history* rows a value no longer depends on where the data
  starts; the live path (`features.incremental`) relies on it.
- **Stationary**: no raw price levels; distances in ATR units or returns, volumes
  relative to their own average.
- **Absent, not zero-filled**: a family runs only when its inputs are present.

Columns: *warm-up* = rows before the first value (a build drops the largest warm-up);
*history* = rows that determine a value to 1e-9 (recursive smoothers remember longer
than their warm-up). Inputs name columns of the loader frame
(`perptrader.marketdata.loader.load`); `book` means the stored L2 snapshots.

Higher-timeframe copies (`htf4h_*`, `htf1d_*`) recompute a family on complete
higher-timeframe bars resampled from the base bars and join each higher bar on the
base bars that close at or after it; their warm-up and history are scaled by the
timeframe ratio. Labels (`label_*`, `fwd_*`, see `features/labels.py`) look ahead by
design and are never features.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def catalogue_markdown() -> str:
    data = catalogue()
    lines = [_INTRO, "## Feature sets", ""]
    lines += ["| set | families | higher timeframes | description |", "|---|---|---|---|"]
    for s in data["sets"]:
        higher = "; ".join(f"{tf}: {', '.join(f)}" for tf, f in s["higher"].items()) or "-"
        fams = ", ".join(s["families"] + s["book_families"])
        lines.append(f"| {s['name']} | {fams} | {higher} | {_cell(s['description'])} |")
    total = sum(len(f["features"]) for f in data["families"])
    lines += ["", f"## Families ({len(data['families'])} families, {total} features before "
              "higher-timeframe copies)", ""]
    for fam in data["families"]:
        needs = ", ".join(fam["requires"]) or "the bar index"
        lines += [f"### `{fam['name']}` ({len(fam['features'])} features)", "",
                  f"{_cell(fam['description'])} Needs: {needs}.", "",
                  "| feature | formula | inputs | warm-up | history |",
                  "|---|---|---|---:|---:|"]
        for f in fam["features"]:
            lines.append(f"| `{f['name']}` | {_cell(f['formula'])} | "
                         f"{', '.join(f['inputs'])} | {f['warmup']} | {f['history']} |")
        lines.append("")
    lines += _higher_section()
    return "\n".join(lines).rstrip() + "\n"


def _higher_section() -> list[str]:
    from perptrader.features.mtf import mtf_family

    families = all_families()
    lines = ["## Higher-timeframe copies (on 1h base bars)", ""]
    seen: set[str] = set()
    for s in FEATURE_SETS.values():
        for tf, names in s.higher:
            for name in names:
                copy = mtf_family(families[name], tf, "1h")
                if copy.name in seen:
                    continue
                seen.add(copy.name)
                lines += [f"### `{copy.name}` ({len(copy.specs)} features, warm-up "
                          f"{copy.warmup}, history {copy.history} bars of 1h)", "",
                          f"`{name}` on {tf} bars: "
                          + ", ".join(f"`{n}`" for n in copy.names), ""]
    return lines
