"""MC_Maze (DANDI 000128, monkey Jenkins): NER and CEBRA on chosen maze conditions, cached; Figs 8 and 11.

The paper trains one model per *selection*: a few maze conditions (the trials table's ``trial_type``)
and, optionally, only some of their versions (``trial_version``: 0 is the maze without barriers, so a
straight reach; 1 and 2 put barriers in the way, so the hand curves around them). The selections of
the paper's figure are in :data:`SELECTIONS`, named ``<kind>_<conditions>``:

* ``straight_13-29-17-38-6-18``: six conditions, version 0 only (straight reaches to six targets).
* ``straight-curve_13``, ``_38``, ``_18`` and ``_13-38-18``: every version of one or three conditions,
  straight and curved reaches to the same target side by side.
* ``up-down_37-1``, ``_31-38``, ``_34-18`` and ``_37-1-31-38-34-18``: pairs of conditions whose targets
  lie in nearly the same direction but whose (curved, versions 1 and 2) paths bend opposite ways.

:func:`train_mc_maze` fits ``ner`` and ``cebra3d`` (``ner.pipeline``'s settings) on the first 80 % of a
selection's trials, in recording order, and writes ``<out>/mc_maze/<method>/<selection>.npz``: the
session-cache keys of ``ner.pipeline`` plus per-bin ``{train,test}_condition``, ``_version`` and
``_target_angle``. A rerun skips every cache whose provenance (method, parameters, iterations, seed,
selection, loading options, sha256 of the NWB file) matches.

Labels: the original authors' MC_Maze runs stored a third label column of zeros, not the reach angle
(their ``continuous_index``), so by default (``angle_label="zero"``) the models rank and search on the
velocity alone, as theirs did; ``angle_label="target"`` puts the target's angle in degrees there.

:func:`load_runs` reads either these caches or, when ``$NER_MC_MAZE_REFERENCE`` names the original
repository's ``data_NER/Fig8`` folder, the original authors' cached runs (in memory only), into the same
:class:`MazeRun` structure; :func:`draw_figure` draws Fig 8 (NER) or Fig 11 (CEBRA) from them.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ner.cache import jsonable, matches, read_npz, remove_stale_parts

__all__ = [
    "DEFAULT_METHODS",
    "FIGURE_GROUPS",
    "HOW_TO",
    "ORIGINAL",
    "OURS",
    "REFERENCE_ENV",
    "SELECTIONS",
    "MazeRun",
    "RunSet",
    "Selection",
    "add_arguments",
    "decode",
    "draw_figure",
    "load_runs",
    "mc_maze_path",
    "parse_selection",
    "run_from_args",
    "select_trials",
    "train_mc_maze",
]

DEFAULT_METHODS = ("ner", "cebra3d")
DEFAULT_ITERATIONS = 5000  # the original's MC_Maze runs: 5000 iterations, learning rate 1e-4
REFERENCE_ENV = "NER_MC_MAZE_REFERENCE"
OURS = "this project's pipeline"
ORIGINAL = "original authors' cached results (Chen, Yang & Wang)"
HOW_TO = ("No MC_Maze results found. Either point NER_MC_MAZE_REFERENCE at the original repository's "
          "data_NER/Fig8 folder, or make this project's caches:\n"
          "    dandi download DANDI:000128\n"
          "    ner mc-maze --nwb 000128/sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb")
REFERENCE_BIN_MS = 5.0  # the original's MC_Maze bins (100 per trial); its files do not say
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CONDITION_COLUMNS = ("trial_type", "trial_version", "maze_id")
_ANGLE_LABELS = ("zero", "target")


# --- selections ------------------------------------------------------------------------------------

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


def _named(kind: str, conditions, versions=None) -> Selection:
    return Selection(f"{kind}_{'-'.join(str(c) for c in conditions)}", tuple(conditions), versions)


_CURVED = (1, 2)
SELECTIONS: dict[str, Selection] = {s.name: s for s in (
    _named("straight", (13, 29, 17, 38, 6, 18), (0,)),
    _named("straight-curve", (13,)), _named("straight-curve", (38,)), _named("straight-curve", (18,)),
    _named("straight-curve", (13, 38, 18)),
    _named("up-down", (37, 1), _CURVED), _named("up-down", (31, 38), _CURVED),
    _named("up-down", (34, 18), _CURVED), _named("up-down", (37, 1, 31, 38, 34, 18), _CURVED),
)}
# Rows of the figure: a title and the selections drawn side by side in it.
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "straight reaches": ("straight_13-29-17-38-6-18",),
    "straight vs curved reaches, one target each": ("straight-curve_13", "straight-curve_38", "straight-curve_18",
                                                    "straight-curve_13-38-18"),
    "curved reaches bending up vs down": ("up-down_37-1", "up-down_31-38", "up-down_34-18",
                                          "up-down_37-1-31-38-34-18"),
}


def parse_selection(text: str) -> Selection:
    """``NAME=13,38,18`` (every version) or ``NAME=13,38,18/1,2`` (versions 1 and 2) as a Selection."""
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([\d,\s]+?)\s*(?:/\s*([\d,\s]+))?\s*", text)
    if not match:
        raise ValueError(f"selection {text!r} must read NAME=CONDITIONS[/VERSIONS], e.g. mine=13,38/0")

    def numbers(part):
        return tuple(int(n) for n in part.replace(",", " ").split())

    return Selection(match.group(1), numbers(match.group(2)),
                     numbers(match.group(3)) if match.group(3) else None)


def mc_maze_path(out_dir, method: str, selection: str) -> Path:
    """Where the cache of ``method`` on ``selection`` lives."""
    return Path(out_dir) / "mc_maze" / method / f"{selection}.npz"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def select_trials(session, trials, selection: Selection, condition_column: str = "trial_type",
                  angle_label: str = "zero"):
    """The part of a :func:`ner.data.nwb.load_mc_maze` session that ``selection`` picks.

    Returns ``(session, per_bin)``: a Session of the chosen trials (recording order, labels with the
    third column as ``angle_label`` says) and per-bin ``condition``, ``version``, ``target_angle`` and
    ``nwb_trial_id`` arrays. A selection that picks no trial is a ValueError naming what the file holds.
    """
    from ner.data.sessions import Session

    if condition_column not in _CONDITION_COLUMNS:
        raise ValueError(f"condition_column must be one of {_CONDITION_COLUMNS}, got {condition_column!r}")
    if angle_label not in _ANGLE_LABELS:
        raise ValueError(f"angle_label must be one of {_ANGLE_LABELS}, got {angle_label!r}")
    conditions = getattr(trials, condition_column)
    if conditions is None:
        raise ValueError(f"the trials table has no {condition_column!r} column, so conditions cannot be "
                         f"selected; pass another condition_column ({', '.join(_CONDITION_COLUMNS)})")
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


# --- training ----------------------------------------------------------------------------------------

def _selections(selections) -> list[Selection]:
    if selections is None:
        return list(SELECTIONS.values())
    if isinstance(selections, (str, Selection)):
        selections = [selections]
    chosen = []
    for item in selections:
        if isinstance(item, Selection):
            chosen.append(item)
        elif item in SELECTIONS:
            chosen.append(SELECTIONS[item])
        else:
            raise ValueError(f"unknown selection {item!r}; the paper's are {', '.join(SELECTIONS)}, "
                             "or give your own as NAME=CONDITIONS[/VERSIONS]")
    if not chosen:
        raise ValueError("selections is empty; pass None for the paper's")
    names = [s.name for s in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"selection names repeat: {names}")
    return chosen


def train_mc_maze(nwb, out_dir="data_NER", methods: Iterable[str] = DEFAULT_METHODS, selections=None,
                  iterations: int = DEFAULT_ITERATIONS, seed: int | None = 0, device: str = "cuda_if_available",
                  method_params: Mapping[str, Mapping] | None = None, force: bool = False, verbose: bool = True,
                  angle_label: str = "zero", condition_column: str = "trial_type", area: str | None = None,
                  bin_ms: float = 5.0, window: tuple[float, float] = (-100.0, 400.0),
                  smooth_sd_bins: float = 1.5) -> dict:
    """Fit each method on each selection of an MC_Maze NWB file and cache the embeddings.

    ``selections``: names from :data:`SELECTIONS`, :class:`Selection` objects, or None for all of the
    paper's. ``area`` (None: every unit), ``bin_ms``, ``window`` and ``smooth_sd_bins`` go to
    :func:`ner.data.nwb.load_mc_maze`; the defaults give the original's 100 bins of 5 ms per trial.
    ``method_params`` maps a method to settings overriding its defaults (e.g. ``{"ner": {"batch_size": 64}}``).
    Every selection is checked against the file before any training. Returns ``computed`` and ``skipped``
    (``"<method>/<selection>"``), ``paths`` and ``wall_time_s``.
    """
    from ner.data.nwb import load_mc_maze
    from ner.pipeline import fit_and_cache, make_estimator, settings_of

    start = time.perf_counter()
    nwb = Path(nwb)
    if not nwb.is_file():
        raise FileNotFoundError(f"NWB file {nwb} does not exist; get MC_Maze with `dandi download DANDI:000128` "
                                "(the file sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb)")
    methods = list(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    if not methods:
        raise ValueError(f"methods is empty; the paper's are {', '.join(DEFAULT_METHODS)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    method_params = dict(method_params or {})
    chosen = _selections(selections)
    loading = {"area": area, "bin_ms": float(bin_ms), "window": [float(w) for w in window],
               "smooth_sd_bins": float(smooth_sd_bins), "condition_column": condition_column,
               "angle_label": angle_label}

    session, trials = load_mc_maze(nwb, bin_ms=bin_ms, window=tuple(window), smooth_sd_bins=smooth_sd_bins,
                                   area=area)
    sha256 = _file_sha256(nwb)
    parts = {s.name: select_trials(session, trials, s, condition_column, angle_label) for s in chosen}
    few = [f"{name} ({part.n_trials})" for name, (part, _) in parts.items() if part.n_train_trials in (0, part.n_trials)]
    if few:
        raise ValueError(f"selection(s) {', '.join(few)} hold too few trials for a training and a test split "
                         "(80/20 needs at least 2)")

    remove_stale_parts(Path(out_dir) / "mc_maze")  # temporary files of killed runs
    summary = {"computed": [], "skipped": [], "paths": []}
    for selection in chosen:
        part, per_bin = parts[selection.name]
        train, test = part.train, part.test
        n_train = part.n_train_trials * part.trial_length
        for method in methods:
            estimator = make_estimator(method, iterations=iterations, seed=seed, device=device,
                                       trial_length=part.trial_length, params=method_params.get(method))
            if "verbose" in estimator.get_params(deep=False):
                estimator.set_params(verbose=verbose)
            request = {"method": method, "parameters": settings_of(estimator), "iterations": iterations,
                       "seed": seed, "nwb_sha256": sha256, "selection": selection.describe(),
                       "loading": jsonable(loading)}
            target = mc_maze_path(out_dir, method, selection.name)
            summary["paths"].append(target)
            if not force and matches(target, request):
                summary["skipped"].append(f"{method}/{selection.name}")
                continue
            if verbose:
                print(f"{method} on {selection.name}: {train.n_trials} training trials, {test.n_trials} test "
                      f"trials, {part.n_units} units, {iterations} iterations", flush=True)
            arrays = {"trial_length": np.int64(part.trial_length),
                      # the NWB file's trial ids, so a bin can be traced back to its trial
                      "train_trial_ids": per_bin["nwb_trial_id"][:n_train],
                      "test_trial_ids": per_bin["nwb_trial_id"][n_train:]}
            for key in ("condition", "version", "target_angle"):
                arrays[f"train_{key}"], arrays[f"test_{key}"] = per_bin[key][:n_train], per_bin[key][n_train:]
            label_columns = ["vx*10 (mm/s)", "vy*10 (mm/s)", "0" if angle_label == "zero" else "target angle (degrees)"]
            fit_and_cache(estimator, train, test, target, seed=seed, device=device, arrays=arrays,
                          provenance={**request, "nwb_file": nwb.name, "n_units": part.n_units,
                                      "label_columns": label_columns})
            summary["computed"].append(f"{method}/{selection.name}")
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    return summary


# --- reading caches or the original's results ---------------------------------------------------------

@dataclass(frozen=True, eq=False)
class MazeRun:
    """One method fitted on one selection: embeddings and per-bin facts of its training and test trials.

    ``condition`` is -1 where the source does not say (the original's files store no condition ids;
    they are recovered from the target angles where the file names allow). ``version`` is the maze
    version (0 straight, 1 and 2 with barriers). Velocities are mm/s (= cm/s x 10).
    """

    name: str
    method: str
    source: str
    selection: Selection
    embedding: dict
    velocity: dict
    condition: dict
    version: dict
    target_angle: dict
    trial_length: int
    bin_ms: float
    loss: np.ndarray | None
    path: Path
    provenance: dict = field(default_factory=dict)

    def n_trials(self, split: str) -> int:
        return len(self.velocity[split]) // self.trial_length


@dataclass(frozen=True, eq=False)
class RunSet:
    """The runs of one method from one source (empty when there are none), and where they came from."""

    method: str
    source: str | None
    folder: Path | None
    runs: dict

    def __bool__(self):
        return bool(self.runs)


def _run_from_cache(path: Path, method: str) -> MazeRun:
    data = read_npz(path)
    provenance = data["provenance"]
    described = provenance.get("selection", {})
    selection = Selection(described.get("name", path.stem), tuple(described.get("conditions") or (-1,)),
                          described.get("versions"))
    split = ("train", "test")
    return MazeRun(
        name=path.stem, method=method, source=OURS, selection=selection,
        embedding={s: data[f"{s}_embedding"] for s in split},
        velocity={s: data[f"{s}_labels"][:, :2].astype(np.float64) for s in split},
        condition={s: data[f"{s}_condition"] for s in split},
        version={s: data[f"{s}_version"] for s in split},
        target_angle={s: data[f"{s}_target_angle"].astype(np.float64) for s in split},
        trial_length=int(data["trial_length"]),
        bin_ms=float(provenance.get("loading", {}).get("bin_ms", REFERENCE_BIN_MS)),
        loss=data.get("loss"), path=path, provenance=provenance)


# "Type: curve-straight=[13, 38, 18]_parameters_5000itr_lr0.0001.npz", possibly with a tag before .npz
_REFERENCE_NAME = re.compile(r"^Type: (?P<kind>[A-Za-z-]+)=\[(?P<ids>[\d, ]+)\]_parameters_(?P<itr>\d+)itr"
                             r"_lr(?P<lr>[0-9.eE-]+?)(?P<tag>_[A-Za-z0-9]+)?\.npz$")
_REFERENCE_KINDS = {"curve-straight": "straight-curve", "curve-up-down": "up-down", "straight": "straight"}
_REFERENCE_FOLDERS = {"ner": ".", "cebra3d": "Supp_Cebra"}


def _reference_selection(match) -> Selection:
    kind = _REFERENCE_KINDS.get(match["kind"], match["kind"])
    ids = tuple(int(i) for i in match["ids"].replace(",", " ").split())
    named = _named(kind, ids)
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


def _reference_runs(folder: Path, method: str) -> dict:
    sub = folder / _REFERENCE_FOLDERS[method]
    found = []
    for path in sorted(sub.glob("*.npz")):
        match = _REFERENCE_NAME.match(path.name)
        if match is None:
            continue
        with np.load(path, allow_pickle=False) as contents:
            data = {key: contents[key] for key in contents.files}
        found.append((_reference_selection(match), data, path, match))
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
            target_angle=angle, trial_length=100, bin_ms=REFERENCE_BIN_MS,
            loss=data.get("train_loss_stable"), path=path,
            provenance={"file": path.name, "iterations": int(match["itr"]), "learning_rate": float(match["lr"])})
    return runs


def _ordered(runs: dict) -> dict:
    order = {name: index for index, name in enumerate(name for group in FIGURE_GROUPS.values() for name in group)}
    return dict(sorted(runs.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def load_runs(method: str, root=None) -> RunSet:
    """Every MC_Maze run of ``method``: the original's when ``$NER_MC_MAZE_REFERENCE`` is set (its
    ``data_NER/Fig8`` folder, read in memory only), else this project's caches under
    ``<root or ner.figures.cache_dir()>/mc_maze/<method>``. Empty (falsy) when neither has any.
    """
    reference = os.environ.get(REFERENCE_ENV)
    if reference:
        folder = Path(reference)
        if not folder.is_dir():
            raise FileNotFoundError(f"{REFERENCE_ENV}={reference} is not a folder; point it at the original "
                                    "repository's data_NER/Fig8")
        if method not in _REFERENCE_FOLDERS:
            return RunSet(method, ORIGINAL, folder, {})
        return RunSet(method, ORIGINAL, folder, _ordered(_reference_runs(folder, method)))
    if root is None:
        from ner.figures import cache_dir

        root = cache_dir()
    folder = Path(root) / "mc_maze" / method
    runs = {path.stem: _run_from_cache(path, method) for path in sorted(folder.glob("*.npz"))}
    return RunSet(method, OURS if runs else None, folder, _ordered(runs))


# --- decoding ------------------------------------------------------------------------------------------

def decode(run: MazeRun) -> dict:
    """A linear decoder fitted on the training embedding, scored on the held-out test trials.

    Velocity: least squares from the embedding. Position: per-trial cumulative sum of velocity from 0,
    for truth and prediction alike, in mm. R^2 is sklearn's ``r2_score(truth, prediction)`` averaged
    over x and y (the variance of the test trials that the decoder explains). ``train_velocity_r2`` and
    ``train_position_r2`` are the in-sample scores on the training trials, the kind the original reported
    as "explained variance"; the predictions and paths returned are the test trials'.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    from ner.evaluation.decoding import trial_positions

    model = LinearRegression().fit(run.embedding["train"], run.velocity["train"])
    scale = run.bin_ms / 1000.0  # mm/s summed over bins -> mm
    result = {}
    for split, prefix in (("train", "train_"), ("test", "")):
        truth = run.velocity[split]
        predicted = model.predict(run.embedding[split])
        true_position = trial_positions(truth, run.trial_length) * scale
        predicted_position = trial_positions(predicted, run.trial_length) * scale
        result[f"{prefix}velocity_r2"] = float(r2_score(truth, predicted))
        result[f"{prefix}position_r2"] = float(r2_score(true_position, predicted_position))
    result.update(predicted_velocity=predicted, true_position=true_position, predicted_position=predicted_position)
    return result


# --- the figure ----------------------------------------------------------------------------------------

def _group_keys(run: MazeRun, split: str) -> np.ndarray:
    """Per-trial group: the condition id where known, else the target angle (one per trial)."""
    first = slice(None, None, run.trial_length)
    condition = run.condition[split][first]
    angle = np.round(run.target_angle[split][first], 1)
    return np.array([f"c{c}" if c >= 0 else f"a{a:.1f}" for c, a in zip(condition, angle)])


def _group_label(key: str, angle: float) -> str:
    return f"condition {key[1:]} ({angle:.0f}°)" if key.startswith("c") else f"target {angle:.1f}°"


def _palette(runs: list[MazeRun]) -> dict:
    """A colour per group (condition) of the figure, in order of target angle, the same in every panel."""
    import matplotlib.pyplot as plt

    angles = {}
    for run in runs:
        for split in ("train", "test"):
            for key, angle in zip(_group_keys(run, split), run.target_angle[split][::run.trial_length]):
                angles.setdefault(key, angle)
    keys = sorted(angles, key=lambda k: (angles[k], k))
    colours = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20").colors
    return {key: (colours[index % len(colours)], _group_label(key, angles[key])) for index, key in enumerate(keys)}


_VERSION_STYLES = {0: "-", 1: "--", 2: ":"}


def _draw_embedding(ax, run: MazeRun, palette: dict, split: str = "test"):
    keys = _group_keys(run, split)
    versions_ = run.version[split][::run.trial_length]
    several_versions = len(set(versions_.tolist())) > 1
    embedding = run.embedding[split]
    for trial, (key, version) in enumerate(zip(keys, versions_)):
        part = embedding[trial * run.trial_length:(trial + 1) * run.trial_length, :3]
        style = _VERSION_STYLES.get(int(version), "-") if several_versions else "-"
        ax.plot(*part.T, color=palette[key][0], lw=0.6, alpha=0.7, ls=style)
        ax.scatter(*part[0], color=palette[key][0], s=4)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    ax.set_title(f"{run.name}\n{run.n_trials(split)} test trials", fontsize=7)


def _draw_trajectories(ax, run: MazeRun, decoded: dict, palette: dict):
    keys = _group_keys(run, "test")
    length = run.trial_length
    for trial, key in enumerate(keys):
        rows = slice(trial * length, (trial + 1) * length)
        ax.plot(*decoded["true_position"][rows].T, color="0.75", lw=0.6)
        ax.plot(*decoded["predicted_position"][rows].T, color=palette[key][0], lw=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.tick_params(labelsize=6)
    ax.set_title(f"test R² velocity {decoded['velocity_r2']:.2f}, position {decoded['position_r2']:.2f}",
                 fontsize=7)


def draw_figure(runset: RunSet, title: str, compare: RunSet | None = None):
    """Fig 8 / Fig 11: per figure group, test embeddings (one 3-D panel per selection) and decoded hand
    paths; then the training loss and every selection's test R^2 (beside ``compare``'s, when given).
    Returns ``(figure, {selection: scores})``."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ner.figures import label

    runs = runset.runs
    grouped = [(heading, [runs[n] for n in names if n in runs]) for heading, names in FIGURE_GROUPS.items()]
    placed = {n for names in FIGURE_GROUPS.values() for n in names}
    others = [run for name, run in runs.items() if name not in placed]
    grouped = [(h, rs) for h, rs in grouped if rs] + ([("other selections", others)] if others else [])
    columns = max(4, max(len(rs) for _, rs in grouped))
    n_rows = 2 * len(grouped) + 1
    fig = plt.figure(figsize=(2.8 * columns + 1.5, 2.7 * n_rows))
    grid = fig.add_gridspec(n_rows, columns, hspace=0.75, wspace=0.3)
    scores = {}
    colours = _palette([run for _, row_runs in grouped for run in row_runs])
    for index, (heading, row_runs) in enumerate(grouped):
        keys = {key for run in row_runs for split in ("train", "test") for key in _group_keys(run, split)}
        palette = {key: value for key, value in colours.items() if key in keys}
        for column, run in enumerate(row_runs):
            decoded = decode(run)
            scores[run.name] = decoded
            ax = fig.add_subplot(grid[2 * index, column], projection="3d")
            _draw_embedding(ax, run, palette)
            _draw_trajectories(fig.add_subplot(grid[2 * index + 1, column]), run, decoded, palette)
        first = fig.axes[-2 * len(row_runs)]
        first.text2D(0.0, 1.3, heading, transform=first.transAxes, fontsize=10, fontweight="bold")
        handles = [Line2D([], [], color=colour, lw=1.5, label=text) for colour, text in palette.values()]
        shown = {int(v) for run in row_runs for v in np.unique(run.version["test"])}
        if len(shown) > 1:
            handles += [Line2D([], [], color="0.3", lw=1, ls=_VERSION_STYLES.get(v, "-"),
                               label="straight (version 0)" if v == 0 else f"curved (version {v})")
                        for v in sorted(shown)]
        handles.append(Line2D([], [], color="0.75", lw=1, label="true hand path"))
        fig.axes[-1].legend(handles=handles, fontsize=6, frameon=False, loc="upper left",
                            bbox_to_anchor=(1.02, 1.0) if len(row_runs) == columns else (1.1, 1.0))

    ax = fig.add_subplot(grid[-1, :columns // 2])
    for name, run in runs.items():
        if run.loss is not None:
            ax.plot(np.arange(1, len(run.loss) + 1), run.loss, lw=0.8, label=name)
    ax.set_xlabel("iteration", fontsize=7)
    ax.set_ylabel("training loss", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5, frameon=False, ncol=2)
    ax.set_title(f"{label(runset.method)} training loss", fontsize=8)

    ax = fig.add_subplot(grid[-1, columns // 2:])
    names = list(scores)
    sets = [(label(runset.method), scores)]
    if compare:
        sets.append((f"{label(compare.method)} (same source)",
                     {n: decode(compare.runs[n]) for n in names if n in compare.runs}))
    width = 0.8 / (2 * len(sets))
    positions = np.arange(len(names))
    for offset, (what, table) in enumerate(sets):
        for kind_index, (kind, hatch) in enumerate((("velocity", None), ("position", "//"))):
            values = [table[n][f"{kind}_r2"] if n in table else np.nan for n in names]
            shift = (2 * offset + kind_index - (2 * len(sets) - 1) / 2) * width
            ax.bar(positions + shift, values, width, color=f"C{offset}", alpha=0.5 + 0.4 * kind_index,
                   hatch=hatch, label=f"{what}: {kind} R²")
            in_sample = [table[n][f"train_{kind}_r2"] if n in table else np.nan for n in names]
            ax.scatter(positions + shift, in_sample, marker="_", s=60, color="k", zorder=3,
                       label="in-sample R² (training trials)" if offset == kind_index == 0 else None)
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize=6)
    lowest = np.nanmin([s[k] for s in scores.values() for k in ("velocity_r2", "position_r2")])
    ax.set_ylim(min(0.0, lowest - 0.05), 1)
    ax.tick_params(labelsize=6)
    ax.set_ylabel("R² (bars: held-out test trials)", fontsize=7)
    ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    note = (f"Results: {runset.source}, read from {runset.folder}. Embeddings and decoded hand paths of the "
            "held-out test trials (the last 20 % of each selection's trials, in recording order); a linear "
            "decoder fitted on the training trials reads hand velocity from the embedding, position is its "
            "per-trial sum. Colour: condition (its target angle); line style: maze version.")
    fig.suptitle(title + "\n" + "\n".join(textwrap.wrap(note, 40 * columns)), fontsize=9, y=1.0)
    return fig, scores


# --- command line ------------------------------------------------------------------------------------------

def add_arguments(parser):
    """The ``ner mc-maze`` options."""
    parser.add_argument("--nwb", required=True, help="the MC_Maze NWB file (`dandi download DANDI:000128`)")
    parser.add_argument("--out", default="data_NER", help="cache folder (default data_NER); caches go to "
                        "<out>/mc_maze/<method>/<selection>.npz")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--selections", nargs="+", metavar="SELECTION",
                        help="the paper's selections to fit (default: all of them: "
                        f"{' '.join(SELECTIONS)}), or your own as NAME=CONDITIONS[/VERSIONS], e.g. mine=13,38/0")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"training steps (the original's MC_Maze runs: {DEFAULT_ITERATIONS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, help="override every method's batch size (paper: 512)")
    parser.add_argument("--device", default="cuda_if_available")
    parser.add_argument("--area", help="units of one area, e.g. M1 or PMd (default: every unit)")
    parser.add_argument("--angle-label", choices=_ANGLE_LABELS, default="zero",
                        help="third label column: zeros as the original's MC_Maze runs (default) or the "
                        "target's angle in degrees")
    parser.add_argument("--condition-column", choices=_CONDITION_COLUMNS, default="trial_type",
                        help="trials-table column the selections' condition ids refer to (default trial_type)")
    parser.add_argument("--force", action="store_true", help="recompute even up-to-date caches")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_from_args(args) -> int:
    """Run :func:`train_mc_maze` from parsed :func:`add_arguments` options and print what it did."""
    selections = None
    if args.selections:
        selections = [parse_selection(item) if "=" in item else item for item in args.selections]
    params = {method: {"batch_size": args.batch_size} for method in args.methods} if args.batch_size else None
    summary = train_mc_maze(args.nwb, out_dir=args.out, methods=args.methods, selections=selections,
                            iterations=args.iterations, seed=args.seed, device=args.device,
                            method_params=params, force=args.force, verbose=not args.quiet,
                            angle_label=args.angle_label, condition_column=args.condition_column, area=args.area)
    print(f"mc_maze: {len(summary['computed'])} computed, {len(summary['skipped'])} up to date, "
          f"{summary['wall_time_s']:.1f} s; caches in {Path(args.out) / 'mc_maze'}")
    return 0
