"""Session files -> ``data_NER/``: one embedding cache per (session, area, method), then result tables.

The folder layout is :mod:`ner.cache`'s, the tables :mod:`ner.tables`'. Each file holds a ``provenance``
JSON string saying how it was made. Files are published by an atomic rename, so a killed run leaves none
half-written; a rerun skips every cache whose provenance matches the request (method, parameters,
iterations, seed, snapshots, sha256 of the session file) and every table whose input caches are
unchanged, and redoes only the rest. Ctrl-C or SIGTERM stops the parallel workers too.

Methods come from :data:`METHODS` (``"ner"``, ``"cebra3d"``, ``"cebra16d"`` with the paper's settings, and
two NER ablations). A name not found there is looked up in ``ner.baselines.make_baseline`` when that
package is importable; :func:`register_method` adds others. A factory is called with keywords
``iterations``, ``seed``, ``device`` and ``trial_length`` and returns an unfitted scikit-learn style
estimator with ``fit(X, y)``, ``transform(X)`` and ``get_params()``/``set_params()``.

``snapshots`` (iterations, for CEBRA-family methods) also stores the embeddings the model gave at
those points of its training: the data of the convergence figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ner.cache import cache_path, jsonable, matches, remove_stale_parts, versions, write_npz
from ner.data import available_sessions, load_session
from ner.data.sessions import DEFAULT_TRIAL_LENGTH, resolve_data_dir
from ner.tables import build_tables

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "Unit",
    "register_method",
    "available_methods",
    "make_estimator",
    "settings_of",
    "fit_and_cache",
    "run_pipeline",
    "add_arguments",
    "run_from_args",
]

DEFAULT_METHODS = ("ner", "cebra3d", "cebra16d")
# Parameters that change what is printed, not what is computed: never a reason to retrain.
UNMATCHED_PARAMETERS = ("verbose",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- methods -------------------------------------------------------------------------------------

def _paper_estimator(which, output_dimension, *, iterations, seed, device, trial_length, **settings):
    from ner.demo import (
        paper_estimators,  # torch and cebra load only when a method is built
    )

    estimator = paper_estimators(iterations, seed, device, verbose=False)[which]
    return estimator.set_params(output_dimension=output_dimension, **settings)


def _baseline(name, *, iterations, seed, device, trial_length):
    from ner.baselines import make_baseline

    estimator = make_baseline(name)
    # Baselines name their settings differently (pca has no seed, pivae counts epochs): hand each only
    # the pipeline settings its constructor has.
    offered = {"max_iterations": iterations, "seed": seed, "device": device, "trial_length": trial_length}
    accepted = estimator.get_params(deep=False)
    return estimator.set_params(**{key: value for key, value in offered.items() if key in accepted})


METHODS: dict[str, Callable] = {
    "ner": functools.partial(_paper_estimator, "NER", 3),
    "cebra3d": functools.partial(_paper_estimator, "CEBRA", 3),
    "cebra16d": functools.partial(_paper_estimator, "CEBRA", 16),
    # Ablations the paper lacks: rank each positive by its own labels instead of its reference's, and
    # search positives on all three label columns instead of the two velocities.
    "ner_own_positives": functools.partial(_paper_estimator, "NER", 3, positive_labels="own"),
    "ner_search_all": functools.partial(_paper_estimator, "NER", 3, search_columns=(0, 1, 2)),
}


def register_method(name: str, factory: Callable) -> None:
    """Add (or replace) a method: ``factory(iterations=, seed=, device=, trial_length=)`` -> estimator.

    For ``n_jobs > 1`` the factory must be picklable (a module-level function or a partial of one).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"method name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    METHODS[name] = factory


def _baseline_names() -> list[str]:
    try:
        from ner.baselines import BASELINES
    except ImportError:
        return []
    return list(BASELINES)


def available_methods() -> list[str]:
    """Every method name the pipeline can run: registered ones, then ``ner.baselines``'."""
    return list(METHODS) + [name for name in _baseline_names() if name not in METHODS]


def _factory(method: str) -> Callable:
    if method in METHODS:
        return METHODS[method]
    if method in _baseline_names():
        return functools.partial(_baseline, method)
    raise ValueError(f"unknown method {method!r}; available: {', '.join(available_methods())}")


def make_estimator(method: str, *, iterations: int, seed: int | None, device: str, trial_length: int,
                   params: Mapping | None = None):
    """A new, unfitted estimator for ``method``; ``params`` override its settings via ``set_params``."""
    return _build(_factory(method), iterations, seed, device, trial_length, params)


def _build(factory, iterations, seed, device, trial_length, params):
    estimator = factory(iterations=iterations, seed=seed, device=device, trial_length=trial_length)
    if params:
        estimator.set_params(**params)
    return estimator


# --- files ---------------------------------------------------------------------------------------

class Unit(NamedTuple):
    """One piece of work: fit ``method`` on one area of one session."""

    session: str
    area: str
    method: str

    def __str__(self):
        return f"{self.method}/{self.session}_{self.area}"


# --- one unit --------------------------------------------------------------------------------------

def _sampler(estimator) -> str | None:
    import cebra

    from ner.estimator import NER

    if isinstance(estimator, NER):
        return "kd-tree exact" if estimator.exact_search else "cebra dense"
    if isinstance(estimator, cebra.CEBRA):
        return "cebra dense"
    return None


def _loss_curve(estimator) -> np.ndarray | None:
    solver = getattr(estimator, "solver_", None)
    curve = solver.log["total"] if solver is not None else getattr(estimator, "loss_history_", None)
    return None if curve is None else np.asarray(curve, dtype=np.float32)


def settings_of(estimator) -> dict:
    """An estimator's parameters as stored in provenance, less those that change only what is printed."""
    return jsonable({key: value for key, value in estimator.get_params(deep=False).items()
                     if key not in UNMATCHED_PARAMETERS})


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


def _seed_everything(seed):
    # cebra.CEBRA has no seed parameter; the global seed fixes its model initialisation (its time_delta
    # sampler seeds itself from entropy, so stock CEBRA runs still differ slightly). NER seeds its own.
    if seed is None:
        return
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)


class _Snapshots:
    """A ``cebra.CEBRA.fit`` callback that embeds the training and test rates at chosen iterations."""

    def __init__(self, iterations, train_neural, test_neural):
        import torch

        self.wanted = set(iterations)
        self.inputs = {"train": torch.from_numpy(np.ascontiguousarray(train_neural, dtype=np.float32)),
                       "test": torch.from_numpy(np.ascontiguousarray(test_neural, dtype=np.float32))}
        self.taken = {"iterations": [], "train": [], "test": []}

    def __call__(self, num_steps, solver):
        import torch

        if num_steps + 1 not in self.wanted:  # cebra counts steps from 0, after the first update
            return
        with torch.no_grad():
            for split, inputs in self.inputs.items():
                self.taken[split].append(solver.transform(inputs).cpu().numpy().astype(np.float32))
        solver.model.train()  # transform switched the model to eval mode; training goes on
        self.taken["iterations"].append(num_steps + 1)

    def arrays(self) -> dict:
        return {"snapshot_iterations": np.array(self.taken["iterations"], dtype=np.int64),
                "snapshot_train_embedding": np.stack(self.taken["train"]),
                "snapshot_test_embedding": np.stack(self.taken["test"])}


def fit_and_cache(estimator, train, test, target: Path, *, provenance: Mapping, arrays: Mapping, seed, device,
                  snapshots=None) -> None:
    """Fit ``estimator`` on the ``train`` split, embed both splits and write the cache at ``target``.

    ``train`` and ``test`` carry ``neural``, ``labels`` and ``n_trials``. The cache holds float32 embeddings and
    labels, the loss curve (trained methods), snapshot embeddings when ``snapshots`` are asked, the caller's
    ``arrays``, and ``provenance`` completed with the trial counts, sampler, versions, device and wall time.
    """
    _seed_everything(seed)
    start = time.perf_counter()
    if snapshots:
        hook = _Snapshots(snapshots, train.neural, test.neural)
        estimator.fit(train.neural, train.labels, callback=hook, callback_frequency=1)
    else:
        estimator.fit(train.neural, train.labels)
    embeddings = {"train_embedding": estimator.transform(train.neural),
                  "test_embedding": estimator.transform(test.neural)}
    wall = time.perf_counter() - start
    provenance = {
        **provenance,
        "n_train_trials": train.n_trials,
        "n_test_trials": test.n_trials,
        "sampler": _sampler(estimator),
        "versions": versions(),
        "device": str(getattr(estimator, "device_", None) or device),
        "wall_time_s": round(wall, 3),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cache = {key: np.asarray(value, dtype=np.float32) for key, value in embeddings.items()}
    cache.update(train_labels=train.labels.astype(np.float32), test_labels=test.labels.astype(np.float32),
                 **arrays, provenance=np.array(json.dumps(provenance, sort_keys=True)))
    loss = _loss_curve(estimator)
    if loss is not None:
        cache["loss"] = loss
    if snapshots:
        cache.update(hook.arrays())
    write_npz(target, cache)


def _run_unit(unit: Unit, path: Path, out_dir: Path, factory, params, iterations, seed, device, force,
              verbose, single_thread, snapshots=None):
    """Fit, embed and cache one unit unless a matching cache exists; returns (unit, status, message)."""
    if single_thread:
        import torch

        torch.set_num_threads(1)  # n_jobs workers share the cores; one thread each avoids oversubscription
    try:
        session = load_session(path, unit.area)
        estimator = _build(factory, iterations, seed, device, session.trial_length, params)
        if "verbose" in estimator.get_params(deep=False):
            estimator.set_params(verbose=verbose)
        request = _request(unit, estimator, seed, session, snapshots)
        target = cache_path(out_dir, unit)
        if not force and matches(target, request):
            return unit, "skipped", None
        train, test = session.train, session.test
        fit_and_cache(estimator, train, test, target, seed=seed, device=device, snapshots=snapshots,
                      provenance={**request, "session": unit.session, "area": unit.area, "session_file": path.name},
                      arrays={"trial_length": np.int64(session.trial_length), "train_trial_ids": train.trial_ids,
                              "test_trial_ids": test.trial_ids})
        return unit, "computed", None
    except Exception as error:  # one failing unit must not cost the others their work; the summary says why
        return unit, "failed", f"{type(error).__name__}: {error}"


# --- the run ---------------------------------------------------------------------------------------

def _plan(data_dir, methods, sessions, areas) -> tuple[list[tuple[Unit, Path]], dict]:
    """Units to run with their session files, and files that could not be read."""
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
    units = [(Unit(info.name, area, method), info.path)
             for info in found for area in info.areas if areas is None or area in areas
             for method in methods]
    return units, unreadable


def _names(chosen, what) -> list[str] | None:
    """A selection as a list (a lone string is one name); None keeps every one found."""
    if chosen is None:
        return None
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    if not chosen:
        raise ValueError(f"{what} is empty; pass None to take every one found")
    return chosen


def _is_cebra(estimator) -> bool:
    import cebra

    return isinstance(estimator, cebra.CEBRA)


def _check_snapshots(snapshots, iterations) -> list[int] | None:
    if snapshots is None:
        return None
    chosen = sorted(set(snapshots))
    bad = [s for s in chosen if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= iterations]
    if bad or not chosen:
        raise ValueError(f"snapshots must be iterations between 1 and iterations={iterations}, got {snapshots!r}")
    return chosen


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


BACKENDS = ("loky", "dask", "ray")


@contextlib.contextmanager
def _backend(name: str):
    """joblib's backend ``name``: local processes (loky), or the workers of a Dask or Ray cluster."""
    from joblib import parallel_config

    if name == "loky":
        yield
        return
    if name == "dask":
        try:
            import distributed
        except ImportError as error:
            raise ImportError(f'backend "dask" needs dask.distributed: pip install "ner[cluster]" ({error})') from None
        # $DASK_SCHEDULER_ADDRESS names a running cluster; without it a local one is started for this run.
        with distributed.Client(os.environ.get("DASK_SCHEDULER_ADDRESS")), parallel_config(backend="dask"):
            yield
        return
    try:
        from ray.util.joblib import register_ray
    except ImportError as error:
        raise ImportError(f'backend "ray" needs ray: pip install "ray[default]" ({error})') from None
    register_ray()  # ray.init() happens on first use, joining $RAY_ADDRESS when it is set
    with parallel_config(backend="ray"):
        yield


def run_pipeline(data_dir=None, out_dir="data_NER", methods: Iterable[str] = DEFAULT_METHODS,
                 sessions: Iterable[str] | None = None, areas: Iterable[str] | None = None,
                 iterations: int = 20000, seed: int | None = 0, n_jobs: int = 1, force: bool = False,
                 device: str = "cuda_if_available", progress: bool = True,
                 method_params: Mapping[str, Mapping] | None = None,
                 snapshots: Iterable[int] | None = None, backend: str = "loky") -> dict:
    """Fit every method on every (session, area), cache the embeddings, then build the result tables.

    ``data_dir`` defaults to $NER_DATA_DIR, else ./data. ``sessions`` and ``areas`` select a subset.
    ``method_params`` maps a method name to settings that override its defaults (e.g. batch_size).
    ``n_jobs > 1`` (or -1) fits units in parallel processes, one torch thread each, on joblib's
    ``backend``: ``"loky"`` (this machine), ``"dask"`` (the cluster at $DASK_SCHEDULER_ADDRESS, else a local
    one) or ``"ray"``.
    ``snapshots``: iterations (at most ``iterations``) at which CEBRA-family methods also store their
    embeddings, for convergence curves.

    Returns ``computed`` and ``skipped`` (unit names such as ``"ner/Chewie_20150629_M1"``), ``failed``
    ({what: message}; the run goes on past a failure), ``tables`` (from :func:`build_tables`),
    ``stale_removed`` (temporary files of killed runs deleted) and ``wall_time_s``.
    """
    start = time.perf_counter()
    methods = list(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    if not methods:
        raise ValueError("methods is empty; choose from " + ", ".join(available_methods()))
    sessions, areas = _names(sessions, "sessions"), _names(areas, "areas")
    method_params = dict(method_params or {})
    stray = [name for name in method_params if name not in methods]
    if stray:
        raise ValueError(f"method_params names {', '.join(stray)}, which is not among methods {methods}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    snapshots = _check_snapshots(snapshots, iterations)
    factories = {method: _factory(method) for method in methods}
    for method, factory in factories.items():
        # Build each method once now, so that a wrong setting fails here and not in every unit.
        estimator = _build(factory, iterations, seed, device, DEFAULT_TRIAL_LENGTH, method_params.get(method))
        if snapshots and not _is_cebra(estimator):
            raise ValueError(f"snapshots need a CEBRA-family method; {method!r} is a {type(estimator).__name__}")

    units, unreadable = _plan(data_dir, methods, sessions, areas)
    out_dir = Path(out_dir)
    stale = remove_stale_parts(out_dir)
    verbose = progress and n_jobs == 1  # per-iteration bars only when units run one after another
    tasks = (delayed(_run_unit)(unit, path, out_dir, factories[unit.method], method_params.get(unit.method),
                                iterations, seed, device, force, verbose, n_jobs != 1, snapshots)
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
    summary.update(tables=tables, stale_removed=[str(path) for path in stale],
                   wall_time_s=round(time.perf_counter() - start, 3))
    return summary


# --- command line ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the pipeline's options to an argparse (sub)parser."""
    parser.add_argument("--data-dir", help="session files (default: $NER_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="data_NER", help="cache folder (default data_NER)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"default: {' '.join(DEFAULT_METHODS)}; also any ner.baselines name")
    parser.add_argument("--sessions", nargs="+", help="default: every session found")
    parser.add_argument("--areas", nargs="+", help="default: every area each session records")
    parser.add_argument("--iterations", type=int, default=20000, help="training steps (paper: 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="parallel units (-1: all cores)")
    parser.add_argument("--backend", choices=BACKENDS, default="loky",
                        help="where parallel units run: this machine (loky), a Dask or a Ray cluster")
    parser.add_argument("--device", default="cuda_if_available")
    parser.add_argument("--snapshots", type=int, nargs="+",
                        help="iterations at which CEBRA-family methods also store their embeddings")
    parser.add_argument("--force", action="store_true", help="recompute even up-to-date caches")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def format_summary(summary: Mapping) -> str:
    """A few lines saying what a run computed, skipped and could not do."""
    tables = summary["tables"]
    lines = [f"units: {len(summary['computed'])} computed, {len(summary['skipped'])} up to date, "
             f"{len(summary['failed'])} failed; tables: {len(tables['computed'])} written, "
             f"{len(tables['skipped'])} up to date; {summary['wall_time_s']:.1f} s"]
    lines += [f"  failed {what}: {message}" for what, message in summary["failed"].items()]
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the pipeline from parsed :func:`add_arguments` options; print the summary; 1 if anything failed."""
    summary = run_pipeline(data_dir=args.data_dir, out_dir=args.out, methods=args.methods,
                           sessions=args.sessions, areas=args.areas, iterations=args.iterations,
                           seed=args.seed, n_jobs=args.jobs, force=args.force, device=args.device,
                           progress=not args.quiet, snapshots=args.snapshots,
                           backend=args.backend)
    print(format_summary(summary))
    return 1 if summary["failed"] else 0
