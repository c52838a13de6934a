"""What the figure notebooks share: reading the caches, naming methods, panels drawn in several figures.

The notebooks in ``notebooks/`` read only ``data_NER/`` (``$NER_CACHE_DIR``) through these functions and
write PDF and PNG into ``figures/`` (``$NER_FIGURES_DIR``); :mod:`ner.viz.notebooks` executes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ner.data.labels import direction_offsets
from ner.evaluation.statistics import off_diagonal
from ner.evaluation.trials import direction_angles, trial_averages
from ner.methods import display_name
from ner.viz.plotting import save_figure
from ner.workflow.published import group_medians
from ner.workflow.shared_space import best_variant
from ner.workflow.store import (
    REPOSITORY,
    Unit,
    cache_dir,
    cache_path,
    cross_session_path,
    read_npz,
    result_path,
    table_path,
)
from ner.workflow.tuned import tuning_records

__all__ = ["BIN_MS", "FIGURES_DIR_ENV", "cache_dir", "figures_dir", "embedding", "decoding", "cross_session",
           "result", "shared_space", "best_variant", "parity_report", "published", "published_medians", "tuning", "session_row", "method_rows", "label", "off_diagonal", "trial_average",
           "direction_offsets", "short_name", "save"]

BIN_MS = 30  # every reaching session is binned at 30 ms
FIGURES_DIR_ENV = "NER_FIGURES_DIR"
label = display_name  # what a figure calls a method


def figures_dir() -> Path:
    """``$NER_FIGURES_DIR``, else the repository's ``figures``."""
    return Path(os.environ.get(FIGURES_DIR_ENV) or REPOSITORY / "figures")


def _read(path: Path, hint: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with `{hint}`")
    return read_npz(path)


def embedding(method: str, session: str, area: str, root=None, seed: int = 0) -> dict:
    """The cache of ``method`` fitted with ``seed`` on one area of one session (see :mod:`ner.workflow.run`)."""
    return _read(cache_path(root or cache_dir(), Unit(session, area, method, seed)),
                 f"ner reproduce --methods {method} --sessions {session} --areas {area} --seeds {seed}")


def decoding(area: str, root=None) -> dict:
    """The decoding table of ``area`` (see :mod:`ner.workflow.tables`)."""
    return _read(table_path(root or cache_dir(), area), "ner reproduce")


def cross_session(subject: str, root=None) -> dict:
    """The cross-session matrices of ``subject`` (see :mod:`ner.workflow.tables`)."""
    return _read(cross_session_path(root or cache_dir(), subject), "ner reproduce")


def result(name: str, root=None) -> dict:
    """The figure data ``name`` (see :mod:`ner.workflow.figure_data`)."""
    return _read(result_path(root or cache_dir(), name), "ner reproduce")


def shared_space(group: str, variant: str, root=None) -> dict:
    """The embeddings of every unit of ``group`` in one latent space (:mod:`ner.workflow.shared_space`);
    ``variant`` names the cache, e.g. ``ner_across_5000it_seed0``."""
    return _read(Path(root or cache_dir()) / "shared_space" / group / f"{variant}.npz",
                 f"ner shared-space --groups {group}")


def calibrations(group: str, held_out: str, root=None) -> list[dict]:
    """Every seed's calibration of ``held_out`` into ``group``'s space, paper settings
    (:func:`ner.workflow.shared_space.calibrate`), by seed."""
    pattern = result_path(root or cache_dir(), f"calibration_{group}_{held_out}_seed*")
    paths = sorted(pattern.parent.glob(pattern.name), key=lambda path: int(path.stem.rsplit("_seed", 1)[1]))
    if not paths:
        raise FileNotFoundError(f"no calibration of {held_out} into {group}: run `ner shared-space --groups {group} "
                                f"--calibrate {held_out}`")
    return [_read(path, "ner shared-space --calibrate") for path in paths]


def parity_report(root=None) -> dict | None:
    """The parity report on the original authors' latents (:mod:`ner.reference.parity`), or None where
    it was never made (it needs their folder: ``ner reproduce --reference DIR``)."""
    path = result_path(root or cache_dir(), "parity")
    return json.loads(str(read_npz(path)["report"])) if path.exists() else None


def published(root=None) -> dict | None:
    """The paper's stored Fig 4 numbers beside ours, unit by unit (:mod:`ner.workflow.published`), or None
    where it was never made (it needs the original's folder: ``ner reproduce --reference DIR``)."""
    path = result_path(root or cache_dir(), "published")
    return read_npz(path) if path.exists() else None


published_medians = group_medians  # medians per method and area / monkey, with the paired differences


def tuning(method: str, root=None) -> dict[str, dict]:
    """The record of ``ner tune`` behind ``<method>_tuned``, per area (:mod:`ner.workflow.tuned`); empty
    where no sweep of ``method`` has finished."""
    return tuning_records(root or cache_dir(), method)


def session_row(table: dict, session: str) -> int:
    """Column of ``session`` in a decoding table; a clear error when it has none."""
    present = table["sessions"].tolist()
    if session not in present:
        raise KeyError(f"the table has no session {session} (it has {', '.join(present)})")
    return present.index(session)


def method_rows(table: dict, methods: Iterable[str]) -> list[int]:
    """Row of each of ``methods`` in a table; a clear error names the ones it lacks."""
    present = table["methods"].tolist()
    missing = [m for m in methods if m not in present]
    if missing:
        raise KeyError(f"the table has no {', '.join(missing)} (it has {', '.join(present)}); "
                       f"run `ner reproduce --methods {' '.join(missing)}`")
    return [present.index(m) for m in methods]


def trial_average(embedding, labels, trial_length) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction trial averages (8 x trial_length x dims) and the 8 directions' angles."""
    return trial_averages(embedding, labels, trial_length), direction_angles()


def short_name(unit: str) -> str:
    """``Chewie_20161007_M1`` -> ``C161007 M1``: unit names that fit in a legend or under a matrix."""
    session, area = unit.rsplit("_", 1)
    subject, date = session.split("_", 1)
    return f"{subject[0]}{date[2:]} {area}"


def save(fig, name: str) -> list[Path]:
    """Write ``fig`` as ``figures/<name>.pdf`` and ``.png`` and close it."""
    written = save_figure(fig, figures_dir() / name)
    plt.close(fig)
    return written
