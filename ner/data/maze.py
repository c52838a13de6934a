"""MC_Maze (DANDI 000128, monkey Jenkins) condition selections: which trials a model is trained on.

The paper trains one model per *selection*: a few maze conditions (the trials table's ``trial_type``)
and, optionally, only some of their versions (``trial_version``: 0 is the maze without barriers, so a
straight reach; 1 and 2 put barriers in the way, so the hand curves around them). The paper's
selections are in :data:`SELECTIONS`, named ``<kind>_<conditions>``:

* ``straight_13-29-17-38-6-18``: six conditions, version 0 only (straight reaches to six targets).
* ``straight-curve_13``, ``_38``, ``_18`` and ``_13-38-18``: every version of one or three conditions,
  straight and curved reaches to the same target side by side.
* ``up-down_37-1``, ``_31-38``, ``_34-18`` and ``_37-1-31-38-34-18``: pairs of conditions whose targets
  lie in nearly the same direction but whose (curved, versions 1 and 2) paths bend opposite ways.

Labels: the original authors' MC_Maze runs stored a third label column of zeros, not the reach angle,
so by default (``angle_label="zero"``) :func:`select_trials` zeroes it and models rank and search on
the velocity alone, as theirs did; ``angle_label="target"`` keeps the target's angle in degrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .sessions import Session

__all__ = ["ANGLE_LABELS", "CONDITION_COLUMNS", "SELECTIONS", "Selection", "named_selection",
           "parse_selection", "select_trials"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONDITION_COLUMNS = ("trial_type", "trial_version", "maze_id")
ANGLE_LABELS = ("zero", "target")


@dataclass(frozen=True)
class Selection:
    """Trials whose condition is one of ``conditions`` and, unless None, whose version is in ``versions``."""

    name: str
    conditions: tuple[int, ...]
    versions: tuple[int, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"selection name {self.name!r} must be letters, digits, '_', '.' or '-' "
                             "(it names a file)")
        conditions = tuple(int(c) for c in self.conditions)
        if not conditions:
            raise ValueError(f"selection {self.name!r} names no condition")
        object.__setattr__(self, "conditions", conditions)
        if self.versions is not None:
            chosen = tuple(int(v) for v in self.versions)
            if not chosen:
                raise ValueError(f"selection {self.name!r}: versions is empty (None takes every version)")
            object.__setattr__(self, "versions", chosen)

    def describe(self) -> dict:
        return {"name": self.name, "conditions": list(self.conditions),
                "versions": None if self.versions is None else list(self.versions)}


def named_selection(kind: str, conditions, versions=None) -> Selection:
    """The selection ``<kind>_<conditions joined by ->``, e.g. ``straight-curve_13-38-18``."""
    return Selection(f"{kind}_{'-'.join(str(c) for c in conditions)}", tuple(conditions), versions)


_CURVED = (1, 2)
SELECTIONS: dict[str, Selection] = {s.name: s for s in (
    named_selection("straight", (13, 29, 17, 38, 6, 18), (0,)),
    named_selection("straight-curve", (13,)), named_selection("straight-curve", (38,)),
    named_selection("straight-curve", (18,)),
    named_selection("straight-curve", (13, 38, 18)),
    named_selection("up-down", (37, 1), _CURVED), named_selection("up-down", (31, 38), _CURVED),
    named_selection("up-down", (34, 18), _CURVED),
    named_selection("up-down", (37, 1, 31, 38, 34, 18), _CURVED),
)}


def parse_selection(text: str) -> Selection:
    """``NAME=13,38,18`` (every version) or ``NAME=13,38,18/1,2`` (versions 1 and 2) as a Selection."""
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([\d,\s]+?)\s*(?:/\s*([\d,\s]+))?\s*", text)
    if not match:
        raise ValueError(f"selection {text!r} must read NAME=CONDITIONS[/VERSIONS], e.g. mine=13,38/0")

    def numbers(part):
        return tuple(int(n) for n in part.replace(",", " ").split())

    return Selection(match.group(1), numbers(match.group(2)),
                     numbers(match.group(3)) if match.group(3) else None)


def select_trials(session, trials, selection: Selection, condition_column: str = "trial_type",
                  angle_label: str = "zero"):
    """The part of a :func:`ner.data.nwb.load_mc_maze` session that ``selection`` picks.

    Returns ``(session, per_bin)``: a Session of the chosen trials (recording order, labels with the
    third column as ``angle_label`` says) and per-bin ``condition``, ``version``, ``target_angle`` and
    ``nwb_trial_id`` arrays. A selection that picks no trial is a ValueError naming what the file holds.
    """
    if condition_column not in CONDITION_COLUMNS:
        raise ValueError(f"condition_column must be one of {CONDITION_COLUMNS}, got {condition_column!r}")
    if angle_label not in ANGLE_LABELS:
        raise ValueError(f"angle_label must be one of {ANGLE_LABELS}, got {angle_label!r}")
    conditions = getattr(trials, condition_column)
    if conditions is None:
        raise ValueError(f"the trials table has no {condition_column!r} column, so conditions cannot be "
                         f"selected; pass another condition_column ({', '.join(CONDITION_COLUMNS)})")
    conditions = np.asarray(conditions).astype(np.int64)
    version = trials.trial_version
    if version is None:
        if selection.versions is not None:
            raise ValueError(f"selection {selection.name!r} asks for versions {list(selection.versions)} but the "
                             "trials table has no 'trial_version' column")
        version = np.full(len(conditions), -1)
    version = np.asarray(version).astype(np.int64)
    chosen = np.isin(conditions, selection.conditions)
    if selection.versions is not None:
        chosen &= np.isin(version, selection.versions)
    rows = np.flatnonzero(chosen)
    if len(rows) == 0:
        present = sorted(set(conditions.tolist()))
        shown = ", ".join(map(str, present[:40])) + (" ..." if len(present) > 40 else "")
        raise ValueError(
            f"selection {selection.name!r} (conditions {list(selection.conditions)}, versions "
            f"{'all' if selection.versions is None else list(selection.versions)}) matches no usable trial; "
            f"{condition_column} values among the usable trials: {shown}; versions: "
            f"{sorted(set(version.tolist()))}")
    bins = np.isin(session.trial_ids, rows)
    trial_of_bin = session.trial_ids[bins]
    labels = session.labels[bins].copy()
    if angle_label == "zero":
        labels[:, 2] = 0.0
    part = Session(name=f"{session.name}:{selection.name}", area=session.area, neural=session.neural[bins],
                   labels=labels, trial_length=session.trial_length, trial_ids=trial_of_bin,
                   sha256=session.sha256, path=session.path)
    per_bin = {"condition": conditions[trial_of_bin], "version": version[trial_of_bin],
               "target_angle": np.asarray(trials.angle, dtype=np.float32)[trial_of_bin],
               "nwb_trial_id": np.asarray(trials.nwb_trial_id).astype(np.int64)[trial_of_bin]}
    return part, per_bin
