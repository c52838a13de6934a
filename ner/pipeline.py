"""Session files -> ``data_NER/``: one embedding cache per (session, area, method), then decoding tables.

Layout of ``out_dir``::

    embeddings/<method>/<session>_<area>.npz   a method fitted on the training trials of one area
    results/decoding_<area>.npz                decoding scores of every cached embedding of that area

Each file holds a ``provenance`` JSON string saying how it was made. Files are published by an atomic
rename, so a killed run leaves none half-written; a rerun skips every cache whose provenance matches the
request (method, parameters, iterations, seed, sha256 of the session file) and every table whose input
caches are unchanged, and redoes only the rest.

Methods come from :data:`METHODS` (``"ner"``, ``"cebra3d"``, ``"cebra16d"``, with the paper's settings).
A name not found there is looked up in ``ner.baselines.make_baseline`` when that package is importable;
:func:`register_method` adds others. A factory is called with keywords ``iterations``, ``seed``,
``device`` and ``trial_length`` and returns an unfitted scikit-learn style estimator with
``fit(X, y)``, ``transform(X)`` and ``get_params()``/``set_params()``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ner.atomic import atomic_write
from ner.data import available_sessions, load_session
from ner.data.sessions import DEFAULT_TRIAL_LENGTH, resolve_data_dir

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "Unit",
    "register_method",
    "available_methods",
    "make_estimator",
    "run_pipeline",
    "build_tables",
    "read_npz",
    "cache_path",
    "table_path",
    "add_arguments",
    "run_from_args",
]

DEFAULT_METHODS = ("ner", "cebra3d", "cebra16d")
# Parameters that change what is printed, not what is computed: never a reason to retrain.
UNMATCHED_PARAMETERS = ("verbose",)
DECODING = {"protocol": "corrected", "decoder": "linear"}
TABLE_METRICS = ("velocity_r2", "position_r2", "peak_accuracy", "accuracy_per_bin")
_PART = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.part$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- methods -------------------------------------------------------------------------------------

def _paper_estimator(which, output_dimension, *, iterations, seed, device, trial_length):
    from ner.demo import (
        paper_estimators,  # torch and cebra load only when a method is built
    )

    estimator = paper_estimators(iterations, seed, device, verbose=False)[which]
    return estimator.set_params(output_dimension=output_dimension)


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


def cache_path(out_dir, unit: Unit) -> Path:
    """Where ``unit``'s embedding cache lives."""
    return Path(out_dir) / "embeddings" / unit.method / f"{unit.session}_{unit.area}.npz"


def table_path(out_dir, area: str) -> Path:
    """Where the decoding table of ``area`` lives."""
    return Path(out_dir) / "results" / f"decoding_{area}.npz"


def _write_atomic(path: Path, arrays: Mapping) -> None:
    """Write an .npz next to ``path`` and rename it into place: readers see the whole file or none."""
    with atomic_write(path) as part, part.open("wb") as stream:
        np.savez_compressed(stream, **arrays)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; leave the file, readers skip it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_parts(out_dir: Path) -> list[Path]:
    """Delete temporary files left by killed writers (a live writer's pid keeps its file)."""
    removed = []
    for folder in (out_dir / "embeddings", out_dir / "results"):
        for part in folder.rglob(".*.part"):
            match = _PART.match(part.name)
            if match and not _pid_alive(int(match.group(1))):
                part.unlink(missing_ok=True)
                removed.append(part)
    return removed


def read_npz(path) -> dict:
    """All arrays of a cache or table file, with ``provenance`` parsed into a dict."""
    with np.load(path, allow_pickle=False) as contents:
        data = {key: contents[key] for key in contents.files}
    data["provenance"] = json.loads(str(data["provenance"]))
    return data


def _stored_provenance(path: Path) -> str | None:
    """The provenance string of a published file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as contents:
            return str(contents["provenance"])
    except (OSError, KeyError, ValueError):
        return None


def _matches(path: Path, expected: Mapping) -> bool:
    """Whether ``path`` is published and its provenance agrees with every field of ``expected``."""
    stored = _stored_provenance(path)
    if stored is None:
        return False
    stored = json.loads(stored)
    return all(stored.get(key) == value for key, value in expected.items())


# --- one unit --------------------------------------------------------------------------------------

def _jsonable(value):
    # Tuples become lists and unknown objects their repr, exactly as a stored provenance reads back.
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def _versions() -> dict:
    import cebra
    import sklearn
    import torch

    import ner

    return {"ner": ner.__version__, "cebra": cebra.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__}


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


def _request(unit: Unit, estimator, iterations, seed, session) -> dict:
    """The provenance fields a cache must match to be reused: method, parameters, iterations, seed and
    the session file's sha256."""
    parameters = {key: value for key, value in estimator.get_params(deep=False).items()
                  if key not in UNMATCHED_PARAMETERS}
    return {
        "method": unit.method,
        "parameters": _jsonable(parameters),
        "iterations": parameters.get("max_iterations"),
        "seed": seed,
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


def _run_unit(unit: Unit, path: Path, out_dir: Path, factory, params, iterations, seed, device, force,
              verbose, single_thread):
    """Fit, embed and cache one unit unless a matching cache exists; returns (unit, status, message)."""
    if single_thread:
        import torch

        torch.set_num_threads(1)  # n_jobs workers share the cores; one thread each avoids oversubscription
    try:
        session = load_session(path, unit.area)
        estimator = _build(factory, iterations, seed, device, session.trial_length, params)
        if "verbose" in estimator.get_params(deep=False):
            estimator.set_params(verbose=verbose)
        request = _request(unit, estimator, iterations, seed, session)
        target = cache_path(out_dir, unit)
        if not force and _matches(target, request):
            return unit, "skipped", None
        train, test = session.train, session.test
        _seed_everything(seed)
        start = time.perf_counter()
        estimator.fit(train.neural, train.labels)
        embeddings = {"train_embedding": estimator.transform(train.neural),
                      "test_embedding": estimator.transform(test.neural)}
        wall = time.perf_counter() - start
        provenance = {
            **request,
            "session": unit.session,
            "area": unit.area,
            "session_file": path.name,
            "n_train_trials": train.n_trials,
            "n_test_trials": test.n_trials,
            "sampler": _sampler(estimator),
            "versions": _versions(),
            "device": str(getattr(estimator, "device_", None) or device),
            "wall_time_s": round(wall, 3),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        arrays = {key: np.asarray(value, dtype=np.float32) for key, value in embeddings.items()}
        arrays.update(
            train_labels=train.labels.astype(np.float32),
            test_labels=test.labels.astype(np.float32),
            trial_length=np.int64(session.trial_length),
            train_trial_ids=train.trial_ids,
            test_trial_ids=test.trial_ids,
            provenance=np.array(json.dumps(provenance, sort_keys=True)),
        )
        loss = _loss_curve(estimator)
        if loss is not None:
            arrays["loss"] = loss
        _write_atomic(target, arrays)
        return unit, "computed", None
    except Exception as error:  # one failing unit must not cost the others their work; the summary says why
        return unit, "failed", f"{type(error).__name__}: {error}"


# --- tables ----------------------------------------------------------------------------------------

def _caches_by_area(out_dir: Path) -> dict[str, dict[tuple[str, str], tuple[Path, str]]]:
    """area -> {(method, session): (path, provenance string)} over every published cache."""
    found: dict = {}
    for path in sorted((out_dir / "embeddings").glob("*/*.npz")):
        stored = _stored_provenance(path)
        if stored is None:
            continue  # unreadable: its unit will be recomputed by the next run
        provenance = json.loads(stored)
        found.setdefault(provenance["area"], {})[(provenance["method"], provenance["session"])] = (path, stored)
    return found


def build_tables(out_dir="data_NER", areas: Iterable[str] | None = None, force: bool = False) -> dict:
    """Decode every cached embedding (corrected protocol, linear decoders) into one table per area.

    ``results/decoding_<area>.npz`` holds ``methods`` (M), ``sessions`` (S), ``trial_length`` (S),
    ``{train,test}_{velocity_r2,position_r2,peak_accuracy}`` (M x S) and ``{train,test}_accuracy_per_bin``
    (M x S x longest trial, NaN-padded); NaN where a (method, session) has no cache or failed to decode.
    A table whose input caches are unchanged is kept unless ``force``. Returns the table paths computed
    and skipped, and ``failed`` {what: message}.
    """
    from ner.evaluation.decoding import decode_session

    out_dir = Path(out_dir)
    summary = {"computed": [], "skipped": [], "failed": {}}
    for area, caches in sorted(_caches_by_area(out_dir).items()):
        if areas is not None and area not in areas:
            continue
        target = table_path(out_dir, area)
        inputs = {f"{method}/{session}": hashlib.sha256(stored.encode()).hexdigest()
                  for (method, session), (_, stored) in sorted(caches.items())}
        request = {**DECODING, "inputs": inputs}
        if not force and _matches(target, request):
            summary["skipped"].append(str(target))
            continue
        methods = sorted({method for method, _ in caches})
        sessions = sorted({session for _, session in caches})
        loaded = {key: read_npz(path) for key, (path, _) in caches.items()}
        lengths = {session: int(data["trial_length"]) for (_, session), data in loaded.items()}
        longest = max(lengths.values())
        table = {}
        for split in ("train", "test"):
            for metric in TABLE_METRICS:
                shape = (len(methods), len(sessions)) + ((longest,) if metric == "accuracy_per_bin" else ())
                table[f"{split}_{metric}"] = np.full(shape, np.nan)
        for (method, session), data in loaded.items():
            i, j = methods.index(method), sessions.index(session)
            try:
                scores = decode_session(data["train_embedding"], data["train_labels"], data["test_embedding"],
                                        data["test_labels"], lengths[session])
            except ValueError as error:
                summary["failed"][f"decoding {method}/{session}_{area}"] = str(error)
                continue
            for split in ("train", "test"):
                for metric in TABLE_METRICS:
                    value = scores[f"{split}_{metric}"]
                    if metric == "accuracy_per_bin":
                        table[f"{split}_{metric}"][i, j, :len(value)] = value
                    else:
                        table[f"{split}_{metric}"][i, j] = value
        provenance = {**request, "area": area, "versions": _versions(),
                      "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_atomic(target, {
            "methods": np.array(methods), "sessions": np.array(sessions),
            "trial_length": np.array([lengths[session] for session in sessions]),
            **table, "provenance": np.array(json.dumps(provenance, sort_keys=True)),
        })
        summary["computed"].append(str(target))
    return summary


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


def run_pipeline(data_dir=None, out_dir="data_NER", methods: Iterable[str] = DEFAULT_METHODS,
                 sessions: Iterable[str] | None = None, areas: Iterable[str] | None = None,
                 iterations: int = 20000, seed: int | None = 0, n_jobs: int = 1, force: bool = False,
                 device: str = "cuda_if_available", progress: bool = True,
                 method_params: Mapping[str, Mapping] | None = None) -> dict:
    """Fit every method on every (session, area), cache the embeddings, then build the decoding tables.

    ``data_dir`` defaults to $NER_DATA_DIR, else ./data. ``sessions`` and ``areas`` select a subset.
    ``method_params`` maps a method name to settings that override its defaults (e.g. batch_size).
    ``n_jobs > 1`` (or -1) fits units in parallel processes, one torch thread each.

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
    factories = {method: _factory(method) for method in methods}
    for method, factory in factories.items():
        # Build each method once now, so that a wrong setting fails here and not in every unit.
        _build(factory, iterations, seed, device, DEFAULT_TRIAL_LENGTH, method_params.get(method))

    units, unreadable = _plan(data_dir, methods, sessions, areas)
    out_dir = Path(out_dir)
    stale = _remove_stale_parts(out_dir)
    verbose = progress and n_jobs == 1  # per-iteration bars only when units run one after another
    tasks = (delayed(_run_unit)(unit, path, out_dir, factories[unit.method], method_params.get(unit.method),
                                iterations, seed, device, force, verbose, n_jobs != 1)
             for unit, path in units)
    summary = {"computed": [], "skipped": [], "failed": dict(unreadable)}
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
    parser.add_argument("--device", default="cuda_if_available")
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
                           progress=not args.quiet)
    print(format_summary(summary))
    return 1 if summary["failed"] else 0
