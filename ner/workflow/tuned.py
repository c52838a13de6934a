"""``<method>_tuned``: a method trained with the settings ``ner tune`` chose, one set per area.

The search runs on one unit per area (``ner tune --session S --area A``) and writes its record,
``tuning/<method>_<session>_<area>.json`` (:func:`ner.workflow.tune.read_tuning`). The tuned method takes
that area's chosen parameters for every unit of the area, at the pipeline's training length (the
sweep's shorter ``iterations`` stay the sweep's), and is cached as ``embeddings/<method>_tuned/``
beside ``<method>`` with the paper's settings, so the tables and figures set the two side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

from ner.methods import (
    METHODS,
    TUNED_SUFFIX,
    Method,
    method,
    register_method,
    tuned_name,
)
from ner.workflow.tune import read_tuning

__all__ = ["tuning_records", "register_tuned", "is_tuned"]


def is_tuned(name: str) -> bool:
    """Whether ``name`` asks for the tuned variant of a registered method."""
    base = name.removesuffix(TUNED_SUFFIX)
    return base != name and base in METHODS and not METHODS[base].params_by_area


def tuning_records(out_dir, method_name: str) -> dict[str, dict]:
    """The tuning record of ``method_name`` for each area under ``<out_dir>/tuning``: one unit per area."""
    folder = Path(out_dir) / "tuning"
    by_area: dict[str, dict] = {}
    for path in sorted(folder.glob(f"{method_name}_*.json")):
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a tuning record ({error}); run `ner tune` again") from None
        if not isinstance(found, dict) or found.get("method") != method_name:
            continue  # another method whose name starts the same, e.g. ner_search_all for ner
        record = read_tuning(out_dir, method_name, found["session"], found["area"])
        if record["area"] in by_area:
            raise ValueError(f"{method_name} was tuned on two {record['area']} units ({by_area[record['area']]['session']} "
                             f"and {record['session']}); settings are chosen on one unit per area: remove one "
                             f"of their records from {folder}")
        by_area[record["area"]] = record
    return by_area


def register_tuned(name: str, out_dir) -> Method:
    """Register ``<name>_tuned`` (``name`` a registered method) from the records of ``out_dir`` and
    return it; a FileNotFoundError says how to make them if there are none."""
    base = method(name)
    records = tuning_records(out_dir, name)
    if not records:
        raise FileNotFoundError(f"no tuned settings of {name} in {Path(out_dir) / 'tuning'}; `ner tune --methods "
                                f"{name} --session SESSION --area AREA` writes them, one unit per area")
    entry = Method(tuned_name(name), f"{base.display_name}, tuned", base.build, base.settings,
                   params_by_area={area: record["params"] for area, record in sorted(records.items())})
    register_method(entry)
    return entry
