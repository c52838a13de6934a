"""``ner tune``: search the CEBRA-family hyperparameters of one session with Optuna, on training trials only.

Each method (``ner``, ``cebra3d`` or any registered CEBRA-family method) gets its own study, with the same
trial budget. A trial trains the method, with the fixed number of iterations and the fixed seed, on the
first trials of the session's training split and scores it on the last ones (:func:`split_training`):
the linear :class:`~ner.evaluation.decoding.TrialDecoder` is fitted on the sub-training embedding and
scored on the validation trials with :func:`~ner.evaluation.decoding.score_trials`. The study maximises
the validation velocity R^2; position R^2, peak accuracy, the seed and the worker are kept as the trial's
user attributes, and a training that diverged (an embedding that is not finite) is pruned. The test
trials are never read: only ``session.train`` is taken, once, and only it reaches the workers.

The search space (:class:`SearchSpace`) is temperature and learning rate (log-uniform), time_offsets
(integers), num_hidden_units and batch_size (choices).

The study is shared by ``workers`` local processes, and by other machines given the same storage, and
resumes after a kill (:mod:`ner.workflow.studies`: the budget's claims, heartbeats). Its name derives
from method, session, area and iterations (:func:`study_name`), so a rerun of the same request finds it
and runs only what is left of the budget. The default storage is SQLite, ``<out_dir>/tuning/studies.db``
(:func:`default_storage`): one file beside the results, no server, and Optuna's relational storage keeps
the heartbeats by which a killed worker's trial is failed. Machines sharing only NFS should rather give a
journal file path (``--storage /nfs/studies.log``) or a PostgreSQL URL: SQLite's locks need a local disk.

When the budget is finished the best parameters are written with :mod:`ner.atomic` to
``<out_dir>/tuning/<method>_<session>_<area>.json`` (:func:`tuning_path`); :func:`read_tuning` reads
them back for training, e.g. ``make_method(record["method"], iterations=record["iterations"],
params=record["params"])``.

Optuna is the optional extra ``neural-embeddings-rank[tune]``; it is imported only when a study is opened.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ner.atomic import atomic_write
from ner.data.labels import check_labels
from ner.data.sessions import Session
from ner.evaluation.decoding import TrialDecoder, score_trials
from ner.methods import Method, build_method, method
from ner.workflow.fit import is_cebra
from ner.workflow.store import jsonable, versions
from ner.workflow.studies import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    StudySpec,
    describe_storage,
    import_optuna,
    open_study,
    run_study,
    tally,
)

__all__ = ["SearchSpace", "DEFAULT_SPACE", "split_training", "validation_scores", "study_name",
           "default_storage", "tune", "tuning_path", "read_tuning", "format_tuning"]


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters searched and their ranges.

    Parameters
    ----------
    temperature, learning_rate : (float, float)
        Bounds of a log-uniform search.
    time_offsets : (int, int)
        Bounds (inclusive) of an integer search.
    num_hidden_units, batch_size : tuple of int
        Choices.
    """

    temperature: tuple[float, float] = (0.05, 5.0)
    time_offsets: tuple[int, int] = (1, 10)
    learning_rate: tuple[float, float] = (1e-5, 1e-2)
    num_hidden_units: tuple[int, ...] = (16, 32, 64, 128)
    batch_size: tuple[int, ...] = (128, 256, 512, 1024)

    def __post_init__(self):
        for name in ("temperature", "learning_rate", "time_offsets"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
                raise ValueError(f"{name} must be two bounds 0 < low <= high, got {bounds!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) for v in self.time_offsets):
            raise ValueError(f"time_offsets must be two integers, got {self.time_offsets!r}")
        for name in ("num_hidden_units", "batch_size"):
            choices = getattr(self, name)
            if not choices or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in choices):
                raise ValueError(f"{name} must be one or more positive integers, got {choices!r}")

    def suggest(self, trial) -> dict:
        """The estimator parameters that an Optuna ``trial`` draws from this space."""
        return {
            "temperature": trial.suggest_float("temperature", *self.temperature, log=True),
            "time_offsets": trial.suggest_int("time_offsets", *self.time_offsets),
            "learning_rate": trial.suggest_float("learning_rate", *self.learning_rate, log=True),
            "num_hidden_units": trial.suggest_categorical("num_hidden_units", list(self.num_hidden_units)),
            "batch_size": trial.suggest_categorical("batch_size", list(self.batch_size)),
        }


DEFAULT_SPACE = SearchSpace()


def split_training(train: Session, validation_fraction: float = 0.2) -> tuple[Session, Session]:
    """Chronological split of training trials: the first ones to fit, the last ``validation_fraction``
    (rounded, at least one trial) to validate. Whole trials, in recording order.

    >>> from ner.data import synthetic_session
    >>> fit, validation = split_training(synthetic_session(n_trials=20, n_neurons=3, trial_length=10).train)
    >>> fit.n_trials, validation.n_trials
    (13, 3)
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie strictly between 0 and 1, got {validation_fraction!r}")
    n_validation = max(1, round(train.n_trials * validation_fraction))
    n_fit = train.n_trials - n_validation
    if n_fit < 1:
        raise ValueError(f"{train.n_trials} training trial(s) leave no trial to fit on beside {n_validation} "
                         "validation trial(s)")
    boundary = n_fit * train.trial_length

    def rows(part):
        return dataclasses.replace(train, neural=train.neural[part], labels=train.labels[part],
                                   trial_ids=train.trial_ids[part])

    return rows(slice(0, boundary)), rows(slice(boundary, None))


def _entry(name: str | Method) -> Method:
    """The registry entry of a CEBRA-family method that has every searched parameter, else a ValueError."""
    entry = name if isinstance(name, Method) else method(name)
    estimator = entry.build() if "iterations" in entry.settings else None
    if estimator is None or not is_cebra(estimator):
        raise ValueError(f"method {entry.name!r} is not of the CEBRA family; ner tune searches the "
                         "hyperparameters of CEBRA-trained methods (ner, cebra3d, ...)")
    missing = sorted(set(dataclasses.asdict(DEFAULT_SPACE)) - set(estimator.get_params(deep=False)))
    if missing:
        raise ValueError(f"method {entry.name!r} has no parameter(s) {', '.join(missing)} to search")
    return entry


def validation_scores(name: str | Method, fit: Session, validation: Session, params: Mapping, *,
                      iterations: int, seed: int = 0, device: str = "cuda_if_available") -> dict | None:
    """Train ``name`` with ``params`` on ``fit``, decode ``validation`` linearly from its embedding.

    Returns ``velocity_r2``, ``position_r2`` and ``peak_accuracy`` of the validation trials, or None when
    the training diverged (an embedding that is not finite).
    """
    import torch

    estimator = build_method(_entry(name), iterations=iterations, seed=seed, device=device,
                             trial_length=fit.trial_length, params=params)
    if "verbose" in estimator.get_params(deep=False):
        estimator.set_params(verbose=False)
    # Stock cebra.CEBRA has no seed: the global one fixes its initialisation (NER seeds its own).
    np.random.seed(seed)
    torch.manual_seed(seed)
    estimator.fit(fit.neural, fit.labels)
    fit_embedding, validation_embedding = estimator.transform(fit.neural), estimator.transform(validation.neural)
    if not (np.isfinite(fit_embedding).all() and np.isfinite(validation_embedding).all()):
        return None
    decoder = TrialDecoder(method="linear").fit(fit_embedding, fit.labels)
    scores = score_trials(decoder, validation_embedding, validation.labels, validation.trial_length)
    return {key: scores[key] for key in ("velocity_r2", "position_r2", "peak_accuracy")}


def study_name(method_name: str, session: str, area: str, iterations: int) -> str:
    """The study of one request: the same name on every rerun, worker and machine."""
    return f"{method_name}_{session}_{area}_{iterations}it"


def default_storage(out_dir="data_NER") -> str:
    """``sqlite:///<out_dir>/tuning/studies.db``, the path made absolute (workers may start elsewhere)."""
    return f"sqlite:///{(Path(out_dir) / 'tuning' / 'studies.db').resolve()}"


@dataclass(frozen=True)
class _Objective:
    """One trial: draw parameters, train on the sub-training trials, score the validation ones. Sent to
    worker processes as it is, so it holds training trials only."""

    entry: Method
    fit: Session
    validation: Session
    space: SearchSpace
    iterations: int
    seed: int
    device: str

    def __call__(self, trial):
        params = self.space.suggest(trial)
        trial.set_user_attr("seed", self.seed)
        scores = validation_scores(self.entry, self.fit, self.validation, params, iterations=self.iterations,
                                   seed=self.seed, device=self.device)
        if scores is None:
            trial.set_user_attr("diverged", True)
            raise import_optuna().TrialPruned("the embedding is not finite: training diverged")
        trial.set_user_attr("position_r2", scores["position_r2"])
        trial.set_user_attr("peak_accuracy", scores["peak_accuracy"])
        return scores["velocity_r2"]


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def tune(session: Session, method_name: str = "ner", *, iterations: int, n_trials: int,
         out_dir="data_NER", storage: str | None = None, workers: int = 1, seed: int = 0,
         device: str = "cuda_if_available", validation_fraction: float = 0.2,
         space: SearchSpace = DEFAULT_SPACE, progress: bool = True,
         heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S) -> dict:
    """Search ``method_name``'s hyperparameters on the training trials of ``session``; write the best.

    Parameters
    ----------
    session : Session
        Only its ``train`` part is read.
    method_name : str
        A CEBRA-family method of :mod:`ner.methods`' registry.
    iterations : int
        Training steps of every trial (fixed, not searched).
    n_trials : int
        The budget: finished trials of the study, over all workers and reruns.
    out_dir : str or os.PathLike
        The result goes to :func:`tuning_path` there, and the default storage beside it.
    storage : str, optional
        A database URL or a journal file path (:func:`ner.workflow.studies.open_storage`); default
        :func:`default_storage`.
    workers : int
        Local worker processes on the study (1: this process).
    seed : int
        The training seed of every trial (recorded with it); it also seeds the sampler.
    device, validation_fraction, space
        Where to train; the share of training trials that validate (:func:`split_training`); what to
        search.
    progress : bool
        A progress bar of the study's finished trials.
    heartbeat_interval, grace_period : int
        Seconds between a running trial's heartbeats, and the age of its last one after which it is
        taken for a killed worker's and failed.

    Returns
    -------
    dict
        The record written (:func:`read_tuning`).
    """
    optuna = import_optuna()
    entry = _entry(method_name)
    _positive(iterations, "iterations")
    _positive(n_trials, "n_trials (the trial budget)")
    _positive(workers, "workers")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
    train = session.train
    fit, validation = split_training(train, validation_fraction)
    for part, labels in (("sub-training", fit.labels), ("validation", validation.labels)):
        try:
            check_labels(labels, f"the {part} trials' labels")
        except ValueError as error:  # the decoders fit, and score, every reach direction
            raise ValueError(f"{session.name} {session.area}: {error}; change validation_fraction "
                             f"({validation_fraction})") from None
    too_large = [size for size in space.batch_size if size > len(fit.neural)]
    if too_large:
        raise ValueError(f"batch_size choice(s) {too_large} exceed the {len(fit.neural)} bins of the "
                         f"{fit.n_trials} sub-training trials of {session.name} {session.area}")
    spec = StudySpec(name=study_name(entry.name, session.name, session.area, iterations),
                     storage=storage or default_storage(out_dir), budget=n_trials, seed=seed,
                     heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    config = jsonable({"method": entry.name, "session": session.name, "area": session.area,
                       "session_sha256": session.sha256, "iterations": iterations, "seed": seed,
                       "validation_fraction": validation_fraction, "fit_trial_ids": _span(fit),
                       "validation_trial_ids": _span(validation), "space": dataclasses.asdict(space)})
    open_study(spec, config)
    objective = _Objective(entry, fit, validation, space, iterations, seed, device)
    study = run_study(spec, objective, workers=workers, progress=progress)
    try:
        best = study.best_trial
    except ValueError:
        raise RuntimeError(f"every trial of study {spec.name} diverged; narrow the search space "
                           "(learning_rate, temperature)") from None
    record = {
        **config,
        "study_name": spec.name,
        "storage": describe_storage(spec.storage),
        "n_trials": tally(study)[0],
        "budget": n_trials,
        "best_trial": best.number,
        "params": best.params,
        "validation_velocity_r2": best.value,
        "validation_position_r2": best.user_attrs["position_r2"],
        "validation_peak_accuracy": best.user_attrs["peak_accuracy"],
        "n_fit_trials": fit.n_trials,
        "n_validation_trials": validation.n_trials,
        "versions": {**versions(), "optuna": optuna.__version__},
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    target = tuning_path(out_dir, entry.name, session.name, session.area)
    with atomic_write(target) as part:
        part.write_text(json.dumps(jsonable(record), indent=1) + "\n")
    return jsonable(record)


def _span(part: Session) -> list:
    """The first and last trial id of a split, as its provenance."""
    return [part.trial_ids[0], part.trial_ids[-1]]


def tuning_path(out_dir, method_name: str, session: str, area: str) -> Path:
    """Where the chosen settings of (method, session, area) are written."""
    return Path(out_dir) / "tuning" / f"{method_name}_{session}_{area}.json"


def read_tuning(out_dir, method_name: str, session: str, area: str, iterations: int | None = None) -> dict:
    """The record :func:`tune` wrote for (method, session, area); ``record["params"]`` are the chosen
    estimator parameters. ``iterations``, when given, must be those the search trained with."""
    path = tuning_path(out_dir, method_name, session, area)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no tuned settings at {path}; `ner tune --methods {method_name} --session "
                                f"{session} --area {area}` writes them") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a tuning record ({error}); run `ner tune` again") from None
    if not {"method", "params", "iterations", "study_name"} <= set(record):
        raise ValueError(f"{path} is not a tuning record (method, params, iterations, study_name)")
    if iterations is not None and record["iterations"] != iterations:
        raise ValueError(f"{path} was tuned with {record['iterations']} iterations, not {iterations}")
    return record


def format_tuning(record: Mapping) -> str:
    """One line of what a study chose."""
    params = ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in record["params"].items())
    return (f"{record['method']} {record['session']} {record['area']}: validation velocity R2 "
            f"{record['validation_velocity_r2']:.3f} (position {record['validation_position_r2']:.3f}, peak "
            f"accuracy {record['validation_peak_accuracy']:.3f}), best of {record['n_trials']} trials of "
            f"{record['study_name']}: {params}")
