"""Session files -> ``data_NER/``: one embedding cache per (method, session, area, seed), then the result tables.

The folder layout is :mod:`ner.workflow.store`'s, the tables :mod:`ner.workflow.tables`'. Files are
published by an atomic rename, so a killed run leaves none half-written; a rerun skips every cache whose
provenance matches the request (method, parameters, iterations, seed, snapshots, sha256 of the session
file) and every table whose input caches are unchanged, and redoes only the rest. Ctrl-C or SIGTERM
stops the parallel workers too.

Methods are the names of :mod:`ner.methods`' registry. ``snapshots`` (iterations, for CEBRA-family
methods) also stores the embeddings the model gave at those points of its training: the data of the
convergence figure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ner.data.sessions import (
    DEFAULT_TRIAL_LENGTH,
    available_sessions,
    load_session,
    resolve_data_dir,
)
from ner.extras import missing_extra
from ner.methods import METHODS, TUNED_SUFFIX, Method, build_method, make_method
from ner.workflow.figure_data import build_figure_data
from ner.workflow.fit import checkpoint_path, fit_and_cache, is_cebra
from ner.workflow.shared_space import (
    GROUPS,
    MULTI_SESSION,
    fit_shared_space,
    shared_space_table,
)
from ner.workflow.store import (
    Unit,
    cache_path,
    matches,
    remove_stale_parts,
    settings_of,
)
from ner.workflow.tables import build_tables
from ner.workflow.tuned import is_tuned, register_tuned

__all__ = ["DEFAULT_METHODS", "BACKENDS", "run_pipeline", "format_summary"]

DEFAULT_METHODS = ("ner", "cebra3d", "cebra16d")
BACKENDS = ("loky", "dask")


def _request(unit: Unit, estimator, seed, session, snapshots) -> dict:
    """The provenance fields a cache must match to be reused: method, parameters, iterations, seed,
    snapshots and the session file's sha256."""
    parameters = settings_of(estimator)
    return {
        "method": unit.method,
        "parameters": parameters,
        "iterations": parameters.get("max_iterations"),
        "seed": seed,
        "snapshots": snapshots,
        "session_sha256": session.sha256,
    }


def _run_unit(unit: Unit, entry: Method, path: Path, out_dir: Path, params, iterations, device, force,
              verbose, single_thread, snapshots=None):
    """Fit, embed and cache one unit unless a matching cache exists; returns (unit, status, message)."""
    if single_thread:
        import torch

        torch.set_num_threads(1)  # n_jobs workers share the cores; one thread each avoids oversubscription
    try:
        session = load_session(path, unit.area)
        # The entry travels with the unit: a worker process knows only the built-in methods.
        estimator = build_method(entry, iterations=iterations, seed=unit.seed, device=device,
                                 trial_length=session.trial_length, params=params, area=unit.area)
        if "verbose" in estimator.get_params(deep=False):
            estimator.set_params(verbose=verbose)
        request = _request(unit, estimator, unit.seed, session, snapshots)
        target = cache_path(out_dir, unit)
        if not force and matches(target, request):
            # A kill between the cache's write and its checkpoint's removal leaves a finished checkpoint behind.
            checkpoint_path(estimator, target, resume=False)
            return unit, "skipped", None
        train, test = session.train, session.test
        fit_and_cache(estimator, train, test, target, seed=unit.seed, device=device, snapshots=snapshots,
                      resume=not force,
                      provenance={**request, "session": unit.session, "area": unit.area, "session_file": path.name},
                      arrays={"trial_length": np.int64(session.trial_length), "train_trial_ids": train.trial_ids,
                              "test_trial_ids": test.trial_ids})
        return unit, "computed", None
    except Exception as error:  # one failing unit must not cost the others their work; the summary says why
        return unit, "failed", f"{type(error).__name__}: {error}"


# --- the run ---------------------------------------------------------------------------------------

def _plan(data_dir, methods, sessions, areas, seeds) -> tuple[list[tuple[Unit, Path]], dict]:
    """Units to run with their session files, and files that could not be read.

    A method without randomness (no ``seed`` setting) is fitted once, under the first seed.
    """
    folder = resolve_data_dir(data_dir)
    found = available_sessions(folder)
    if not found:
        raise ValueError(f"no session files (*_neural_con_dis_index.mat) in {folder}; "
                         "fetch them with `ner fetch` or pass data_dir")
    by_name = {info.name: info for info in found}
    if sessions is not None:
        unknown = [name for name in sessions if name not in by_name]
        if unknown:
            raise ValueError(f"session(s) {', '.join(unknown)} not in {folder}; "
                             f"sessions there: {', '.join(by_name)}")
        found = [by_name[name] for name in dict.fromkeys(sessions)]
    if areas is not None:
        recorded = {area for info in found for area in info.areas}
        missing = [area for area in areas if area not in recorded]
        if missing:
            raise ValueError(f"no selected session records area(s) {', '.join(missing)}; "
                             f"areas recorded: {', '.join(sorted(recorded)) or 'none'}")
    unreadable = {info.name: f"{info.path}: no neural_<area> recordings could be read; "
                  "load_session says what is wrong" for info in found if not info.areas}
    units = [(Unit(info.name, area, method, seed), info.path)
             for seed in seeds for method in methods if seed == seeds[0] or "seed" in METHODS[method].settings
             for info in found for area in info.areas if areas is None or area in areas]
    untuned = sorted({(unit.method, unit.area) for unit, _ in units
                      if METHODS[unit.method].params_by_area and unit.area not in METHODS[unit.method].params_by_area})
    if untuned:
        method, area = untuned[0]
        raise ValueError(f"{method} has no tuned settings for {', '.join(a for m, a in untuned if m == method)}: "
                         f"`ner tune --methods {method.removesuffix(TUNED_SUFFIX)} --session SESSION --area {area}` "
                         "chooses them on one unit, or select the tuned areas with areas")
    return units, unreadable


def _names(chosen, what) -> list[str] | None:
    """A selection as a list (a lone string is one name); None keeps every one found."""
    if chosen is None:
        return None
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    if not chosen:
        raise ValueError(f"{what} is empty; pass None to take every one found")
    return chosen


def _check_snapshots(snapshots, iterations) -> list[int] | None:
    if snapshots is None:
        return None
    chosen = sorted(set(snapshots))
    if iterations is None:
        raise ValueError("snapshots need iterations: say how long the CEBRA-family methods train")
    bad = [s for s in chosen if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= iterations]
    if bad or not chosen:
        raise ValueError(f"snapshots must be iterations between 1 and iterations={iterations}, got {snapshots!r}")
    return chosen


def _check_seeds(seeds) -> list[int]:
    chosen = list(dict.fromkeys([seeds] if isinstance(seeds, int) else seeds))
    if not chosen or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in chosen):
        raise ValueError(f"seeds must be one or more non-negative integers, got {seeds!r}")
    return chosen


def _check_groups(groups, methods) -> tuple[list[str], list[str]]:
    """The shared-space groups asked for and the multi-session models of ``methods`` that train them."""
    if groups is None:
        return [], []
    groups = list(dict.fromkeys(_names(groups, "groups")))
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    models = [MULTI_SESSION[name] for name in methods if name in MULTI_SESSION]
    if not models:
        raise ValueError(f"groups train the multi-session models of {' or '.join(MULTI_SESSION)}; "
                         f"neither is among methods {methods}")
    return groups, models


def _shared_space(group, models, data_dir, out_dir, seeds, iterations, device, force, progress) -> Path:
    """One group's shared latent space per model and seed (each cache kept where its request is
    unchanged), then its no-alignment table."""
    length = {} if iterations is None else {"iterations": iterations}
    for seed in seeds:
        for model in models:
            fit_shared_space(group, model, data_dir=data_dir, out_dir=out_dir, seed=seed, device=device,
                             force=force, verbose=progress, **length)
    return shared_space_table(group, out_dir=out_dir)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _stop_workers_on_interrupt(parallel: bool):
    """Make SIGTERM stop the run as Ctrl-C does, and take the worker processes down with it.

    Without this, a terminated parent leaves joblib's workers finishing their units (their caches are
    still whole, but the user asked for everything to stop).
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if parallel:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=False, kill_workers=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _backend(name: str):
    """joblib's backend ``name``: local processes (loky), or the workers of a Dask cluster."""
    from joblib import parallel_config

    if name == "loky":
        yield
        return
    try:
        import distributed
    except ImportError as error:
        raise missing_extra("dask.distributed", "cluster", error) from None
    # $DASK_SCHEDULER_ADDRESS names a running cluster; without it a local one is started for this run.
    with distributed.Client(os.environ.get("DASK_SCHEDULER_ADDRESS")), parallel_config(backend="dask"):
        yield


def run_pipeline(data_dir=None, out_dir="data_NER", methods: Iterable[str] = DEFAULT_METHODS,
                 sessions: Iterable[str] | None = None, areas: Iterable[str] | None = None,
                 iterations: int | None = None, seeds: Iterable[int] = (0,), n_jobs: int = 1, force: bool = False,
                 device: str = "cuda_if_available", progress: bool = True,
                 method_params: Mapping[str, Mapping] | None = None,
                 snapshots: Iterable[int] | None = None, backend: str = "loky",
                 reference_dir=None, groups: Iterable[str] | None = None) -> dict:
    """Fit every method on every (session, area), cache the embeddings, then build the result tables.

    ``data_dir`` defaults to $NER_DATA_DIR, else ./data. ``sessions`` and ``areas`` select a subset.
    ``iterations`` sets the training length of the CEBRA-family methods (None: their default, the paper's
    20000); it is an error for a method without iterations (:func:`ner.methods.make_method`). Each method
    with randomness is fitted once per seed of ``seeds`` (every seed's units before the next seed's), the
    others once. ``"<method>_tuned"`` trains ``method`` with the settings ``ner tune`` chose for each
    area, read from ``out_dir/tuning`` (:mod:`ner.workflow.tuned`).
    ``method_params`` maps a method name to settings that override its defaults (e.g. batch_size, or
    piVAE's epochs). ``n_jobs > 1`` (or -1) fits units in parallel processes, one torch thread each, on
    joblib's ``backend``: ``"loky"`` (this machine) or ``"dask"`` (the cluster at $DASK_SCHEDULER_ADDRESS,
    else a local one). After the tables, the figure data (:mod:`ner.workflow.figure_data`) is rebuilt where
    its inputs changed; ``reference_dir`` (the original authors' results) adds the parity numbers.
    ``snapshots``: iterations (at most ``iterations``) at which CEBRA-family methods also store their
    embeddings, for convergence curves. ``groups`` (of :data:`ner.workflow.shared_space.GROUPS`) also
    trains each group's shared latent space per seed with the multi-session model of ``ner`` and of
    ``cebra3d``, where they are among ``methods`` (at ``iterations``, else the shared space's own
    default), and tabulates it decoded with no alignment (:mod:`ner.workflow.shared_space`).

    Returns ``computed`` and ``skipped`` (unit names such as ``"ner/seed0/Chewie_20150629_M1"``), ``failed``
    ({what: message}; the run goes on past a failure), ``tables`` (from :func:`build_tables`),
    ``stale_removed`` (temporary files of killed runs deleted), ``shared_spaces`` ({group: its table})
    and ``wall_time_s``.
    """
    start = time.perf_counter()
    methods = list(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    if not methods:
        raise ValueError("methods is empty; choose from " + ", ".join(METHODS))
    out_dir = Path(out_dir)
    for name in methods:
        if is_tuned(name):  # from the records of `ner tune`, read afresh: a new sweep may have finished
            register_tuned(name.removesuffix(TUNED_SUFFIX), out_dir)
    sessions, areas = _names(sessions, "sessions"), _names(areas, "areas")
    method_params = dict(method_params or {})
    stray = [name for name in method_params if name not in methods]
    if stray:
        raise ValueError(f"method_params names {', '.join(stray)}, which is not among methods {methods}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int)
                                   or iterations < 1):
        raise ValueError(f"iterations must be a positive integer or None, got {iterations!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    snapshots = _check_snapshots(snapshots, iterations)
    seeds = _check_seeds(seeds)
    groups, models = _check_groups(groups, methods)
    for method in methods:
        # Build each method once now (per tuned area), so that a wrong setting fails here and not in every unit.
        for area in getattr(METHODS.get(method), "params_by_area", None) or [None]:
            estimator = make_method(method, iterations=iterations, seed=seeds[0], device=device,
                                    trial_length=DEFAULT_TRIAL_LENGTH, params=method_params.get(method), area=area)
        if snapshots and not is_cebra(estimator):
            raise ValueError(f"snapshots need a CEBRA-family method; {method!r} is a {type(estimator).__name__}")

    units, unreadable = _plan(data_dir, methods, sessions, areas, seeds)
    stale = remove_stale_parts(out_dir)
    verbose = progress and n_jobs == 1  # per-iteration bars only when units run one after another
    tasks = (delayed(_run_unit)(unit, METHODS[unit.method], path, out_dir, method_params.get(unit.method),
                                iterations, device, force, verbose, n_jobs != 1, snapshots)
             for unit, path in units)
    summary = {"computed": [], "skipped": [], "failed": dict(unreadable)}
    with _backend(backend), _stop_workers_on_interrupt(n_jobs != 1 and backend == "loky"):
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
        with tqdm(total=len(units), desc="units", unit="unit", disable=not progress) as bar:
            for unit, status, message in results:
                if status == "failed":
                    summary["failed"][str(unit)] = message
                else:
                    summary[status].append(str(unit))
                bar.set_postfix_str(f"{status} {unit}")
                bar.update()
    tables = build_tables(out_dir, areas=sorted({unit.area for unit, _ in units}), force=force)
    summary["failed"].update(tables.pop("failed"))
    shared_spaces = {group: str(_shared_space(group, models, data_dir, out_dir, seeds, iterations, device, force,
                                              progress)) for group in groups}
    figure_data = build_figure_data(out_dir, reference_dir=reference_dir, force=force)
    summary["failed"].update(figure_data.pop("failed"))
    summary.update(tables=tables, figure_data=figure_data, stale_removed=[str(path) for path in stale],
                   shared_spaces=shared_spaces,
                   wall_time_s=round(time.perf_counter() - start, 3))
    return summary


def format_summary(summary: Mapping) -> str:
    """A few lines saying what a run computed, skipped and could not do."""
    tables = summary["tables"]
    lines = [f"units: {len(summary['computed'])} computed, {len(summary['skipped'])} up to date, "
             f"{len(summary['failed'])} failed; tables: {len(tables['computed'])} written, "
             f"{len(tables['skipped'])} up to date; {summary['wall_time_s']:.1f} s"]
    lines += [f"  failed {what}: {message}" for what, message in summary["failed"].items()]
    return "\n".join(lines)
