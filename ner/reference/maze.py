"""The original authors' MC_Maze results (their repository's ``data_NER/Fig8``), read as :class:`MazeRun`.

Their files are named ``Type: <kind>=[<conditions>]_parameters_<N>itr_lr<rate>[_tag].npz`` and hold
``cebra_veldir_{train,test}`` embeddings, ``continuous_index_{train,test}`` labels (a third column of
zeros), ``target_angle_*`` and ``version_index_*``: no condition ids, which are recovered from the
target angles where the file names allow.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ner.data.maze import SELECTIONS, Selection, named_selection
from ner.evaluation.maze import MazeRun

__all__ = ["ORIGINAL", "BIN_MS", "FOLDERS", "original_runs"]

ORIGINAL = "original authors' cached results (Chen, Yang & Wang)"
BIN_MS = 5.0  # the original's MC_Maze bins (100 per trial); its files do not say
# Where each method's runs lie inside Fig8/.
FOLDERS = {"ner": ".", "cebra3d": "Supp_Cebra"}

# "Type: curve-straight=[13, 38, 18]_parameters_5000itr_lr0.0001.npz", possibly with a tag before .npz
# ("Type_ ..." where the ':' could not be kept: ner.data.download.local_name on Windows)
_FILE_NAME = re.compile(r"^Type[:_] (?P<kind>[A-Za-z-]+)=\[(?P<ids>[\d, ]+)\]_parameters_(?P<itr>\d+)itr"
                        r"_lr(?P<lr>[0-9.eE-]+?)(?P<tag>_[A-Za-z0-9]+)?\.npz$")
_KINDS = {"curve-straight": "straight-curve", "curve-up-down": "up-down", "straight": "straight"}


def _selection_of(match) -> Selection:
    kind = _KINDS.get(match["kind"], match["kind"])
    ids = tuple(int(i) for i in match["ids"].replace(",", " ").split())
    named = named_selection(kind, ids)
    return SELECTIONS.get(named.name, named)


def _condition_ids(runs: list[tuple[Selection, dict]]) -> dict[float, int]:
    """Target angle (rounded to 0.01 degree) -> condition id, from the files that can tell.

    A file of one condition names its angle's condition; in a file of several, an angle left alone
    with one condition not yet placed gets that one. Repeated until nothing new is learnt.
    """
    known: dict[float, int] = {}
    changed = True
    while changed:
        changed = False
        for selection, data in runs:
            angles = set(np.round(np.concatenate([data["target_angle_train"], data["target_angle_test"]]), 2))
            unknown = [a for a in angles if a not in known]
            free = [c for c in selection.conditions if c not in known.values()]
            if len(unknown) == 1 and len(free) == 1:
                known[unknown[0]] = free[0]
                changed = True
    return known


def original_runs(folder: Path, method: str) -> dict:
    """``{selection name: MazeRun}`` of ``method`` (a key of :data:`FOLDERS`) in the folder ``Fig8``."""
    sub = folder / FOLDERS[method]
    found = []
    for path in sorted(sub.glob("*.npz")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        with np.load(path, allow_pickle=False) as contents:
            data = {key: contents[key] for key in contents.files}
        found.append((_selection_of(match), data, path, match))
    known = _condition_ids([(selection, data) for selection, data, _, _ in found])
    runs = {}
    for selection, data, path, match in found:
        if selection.name in runs:  # two tags of one selection: keep the first, sorted by file name
            continue
        split = ("train", "test")
        angle = {s: data[f"target_angle_{s}"].astype(np.float64) for s in split}
        runs[selection.name] = MazeRun(
            name=selection.name, method=method, source=ORIGINAL, selection=selection,
            embedding={s: data[f"cebra_veldir_{s}"].astype(np.float32) for s in split},
            velocity={s: data[f"continuous_index_{s}"][:, :2].astype(np.float64) for s in split},
            condition={s: np.array([known.get(a, -1) for a in np.round(angle[s], 2)], dtype=np.int64)
                       for s in split},
            version={s: data[f"version_index_{s}"].astype(np.int64) for s in split},
            target_angle=angle, trial_length=100, bin_ms=BIN_MS,
            loss=data.get("train_loss_stable"), path=path,
            provenance={"file": path.name, "iterations": int(match["itr"]), "learning_rate": float(match["lr"])})
    return runs
