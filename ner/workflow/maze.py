"""MC_Maze training: NER and CEBRA on the paper's condition selections of the NWB file, cached.

:func:`train_mc_maze` fits each method (``ner.methods``' settings) on the first 80 % of a selection's
trials (:mod:`ner.data.maze`), in recording order, and writes ``<out>/mc_maze/<method>/<selection>.npz``:
the keys of an embedding cache plus per-bin ``{train,test}_condition``, ``_version`` and
``_target_angle``. A rerun skips every cache whose provenance (method, parameters, iterations, seed,
selection, loading options, sha256 of the NWB file) matches. :func:`cached_runs` reads them back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ner.data.download import sha256
from ner.data.maze import SELECTIONS, Selection, select_trials
from ner.data.nwb import load_mc_maze
from ner.evaluation.maze import MazeRun
from ner.methods import make_method
from ner.workflow.fit import fit_and_cache
from ner.workflow.store import (
    jsonable,
    matches,
    read_npz,
    remove_stale_parts,
    settings_of,
)

__all__ = ["DEFAULT_METHODS", "DEFAULT_ITERATIONS", "OURS", "mc_maze_path", "train_mc_maze", "cached_runs"]

DEFAULT_METHODS = ("ner", "cebra3d")
DEFAULT_ITERATIONS = 5000  # the original's MC_Maze runs: 5000 iterations, learning rate 1e-4
OURS = "this project's pipeline"


def mc_maze_path(out_dir, method: str, selection: str) -> Path:
    """Where the cache of ``method`` on ``selection`` lives."""
    return Path(out_dir) / "mc_maze" / method / f"{selection}.npz"


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
    for method in methods:  # a wrong method or setting fails before the file is read and anything trains
        make_method(method, iterations=iterations, seed=seed, device=device, params=method_params.get(method))
    chosen = _selections(selections)
    loading = {"area": area, "bin_ms": float(bin_ms), "window": [float(w) for w in window],
               "smooth_sd_bins": float(smooth_sd_bins), "condition_column": condition_column,
               "angle_label": angle_label}

    session, trials = load_mc_maze(nwb, bin_ms=bin_ms, window=tuple(window), smooth_sd_bins=smooth_sd_bins,
                                   area=area)
    nwb_sha256 = sha256(nwb)
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
            estimator = make_method(method, iterations=iterations, seed=seed, device=device,
                                    trial_length=part.trial_length, params=method_params.get(method))
            if "verbose" in estimator.get_params(deep=False):
                estimator.set_params(verbose=verbose)
            request = {"method": method, "parameters": settings_of(estimator), "iterations": iterations,
                       "seed": seed, "nwb_sha256": nwb_sha256, "selection": selection.describe(),
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


def cached_runs(folder: Path, method: str) -> dict:
    """``{selection name: MazeRun}`` of the caches of ``method`` in ``folder`` (``<out>/mc_maze/<method>``)."""
    return {path.stem: _run_from_cache(path, method) for path in sorted(Path(folder).glob("*.npz"))}


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
        bin_ms=float(provenance.get("loading", {}).get("bin_ms", 5.0)),
        loss=data.get("loss"), path=path, provenance=provenance)
