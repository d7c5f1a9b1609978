"""Every feature family by name, collected from the family modules.

Family modules export ``FAMILIES``; they are imported here (lazily, once) so that
``perptrader features list`` and the pipeline see one catalogue, and so that a
duplicate family or column name is an error at start-up rather than a silent
overwrite in a Parquet file.
"""

from __future__ import annotations

import importlib
from functools import cache

from perptrader.features.base import Family

#: modules of ``perptrader.features`` that define families, in catalogue order
FAMILY_MODULES = (
    "vsa",
    "indicators",
    "candles",
    "calendar",
    "derivatives",
    "microstructure",
)


@cache
def all_families() -> dict[str, Family]:
    """Name → family for every family of every module in ``FAMILY_MODULES``."""
    families: dict[str, Family] = {}
    owner: dict[str, str] = {}
    for module_name in FAMILY_MODULES:
        module = importlib.import_module(f"perptrader.features.{module_name}")
        for family in module.FAMILIES:
            if family.name in families:
                raise RuntimeError(f"feature family {family.name!r} defined twice")
            for column in family.names:
                if not column.startswith(f"{family.name}_"):
                    raise RuntimeError(f"feature {column!r} of family {family.name!r} does "
                                       f"not carry the family prefix")
                if column in owner:
                    raise RuntimeError(f"feature {column!r} defined by {owner[column]!r} and "
                                       f"{family.name!r}")
                owner[column] = family.name
            families[family.name] = family
    return families


def get_family(name: str) -> Family:
    families = all_families()
    if name not in families:
        raise KeyError(f"unknown feature family {name!r}; known: {', '.join(families)}")
    return families[name]
