"""Optuna studies with a trial budget that worker processes, and machines, share and resume.

Storage
-------
A study lives in a storage every worker opens by name (:func:`open_storage`): a database URL for
:class:`optuna.storages.RDBStorage` (``sqlite:///path.db``, ``postgresql://...``) or, when it holds no
``://``, the path of a journal file for :class:`optuna.storages.JournalStorage` with a file backend.
:mod:`ner.workflow.tune` defaults to SQLite: one file, no server, and Optuna's relational storage records
heartbeats itself. SQLite needs a file system with working locks (local disks; NFS often lacks them): for
machines that share only NFS, use a journal file (its lock is a symlink, made for NFS) or a PostgreSQL or
MySQL server. Optuna's journal storage records no heartbeats; here it is given them (the running trial's
last heartbeat as a system attribute, with the machines' clocks roughly in step).

Budget
------
The budget counts finished trials: completed ones and pruned ones (an objective raises
``optuna.TrialPruned`` for a trial that ran but has no score, which the sampler ranks as worst). Optuna's
``MaxTrialsCallback`` stops a worker only after its trial ends, so N workers can overshoot by N - 1.
Here a trial claims its place when it starts: it runs only if fewer than ``budget`` trials numbered
before it are finished or running, and is otherwise failed at once (user attribute ``over_budget``).
Storages number trials in creation order, so the claim holds across processes, machines and restarts.
A worker whose remaining places are all claimed by running trials waits, since one may yet fail.

Resume
------
A killed worker leaves its trial RUNNING; its heartbeats stop, and once the last is ``grace_period``
seconds old the next worker to look fails it, and another trial takes its place. Finished trials stay, so
a rerun spends only what is left of the budget. A study keeps the configuration it was made for and
refuses another (:func:`open_study`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ner.extras import missing_extra

__all__ = ["HEARTBEAT_INTERVAL_S", "GRACE_PERIOD_S", "StudySpec", "import_optuna", "open_storage",
           "describe_storage", "open_study", "tally", "run_study"]

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60  # a running trial whose last heartbeat is older is taken for a killed worker's
_CONFIG_ATTR = "ner_config"  # the study user attribute holding what the study was made for
_HEARTBEAT_ATTR = "ner:heartbeat"  # journal storages: the running trial's last heartbeat (unix time)


def import_optuna():
    """The ``optuna`` module, or an ImportError naming the extra that installs it."""
    try:
        import optuna
    except ImportError as error:
        raise missing_extra("optuna", "tune", error) from None
    return optuna


@dataclass(frozen=True)
class StudySpec:
    """Which study, where, and its budget: what every worker of it is given.

    Parameters
    ----------
    name : str
        The study's name in the storage.
    storage : str
        A database URL or a journal file path (:func:`open_storage`).
    budget : int
        Finished trials to reach, over all workers and reruns.
    seed : int
        Seeds the sampler, with the worker's index and the trials already there.
    heartbeat_interval, grace_period : int
        Seconds between a running trial's heartbeats, and the age of its last one after which it is failed.
    """

    name: str
    storage: str
    budget: int
    seed: int = 0
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S


@functools.cache
def _heartbeat_journal():
    """``JournalStorage`` with the heartbeat interface that ``Study.optimize`` looks for, so that it fails
    the trials of killed workers as it does for relational storages."""
    optuna = import_optuna()
    # Not exported, but the interface Study.optimize checks for.
    from optuna.storages._heartbeat import BaseHeartbeat

    class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
        def __init__(self, backend, heartbeat_interval, grace_period):
            super().__init__(backend)
            self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period

        def record_heartbeat(self, trial_id):
            self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id):
            oldest = time.time() - self.grace_period
            running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            return [trial._trial_id for trial in running
                    if trial.system_attrs.get(_HEARTBEAT_ATTR, trial.datetime_start.timestamp()) < oldest]

        def get_heartbeat_interval(self):
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self):
            return None

        get_failed_trial_callback = get_heartbeat_stale_trial_callback  # its name before Optuna 4.9

    return HeartbeatJournalStorage


def open_storage(storage: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S):
    """The Optuna storage ``storage`` names (a database URL, or a journal file path), with heartbeats.

    The folder of a SQLite or journal file is made; a storage that cannot be opened is a ValueError.
    """
    optuna = import_optuna()
    if not isinstance(storage, str) or not storage:
        raise ValueError(f"storage must be a database URL or a journal file path, got {storage!r}")
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number of seconds, got {value!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            if "://" not in storage:
                Path(storage).parent.mkdir(parents=True, exist_ok=True)
                backend = optuna.storages.journal.JournalFileBackend(storage)
                return _heartbeat_journal()(backend, heartbeat_interval, grace_period)
            engine_kwargs = {}
            if storage.startswith("sqlite"):
                import sqlalchemy

                database = sqlalchemy.engine.make_url(storage).database
                if database and database != ":memory:":
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                # Workers queue for SQLite's single writer; its 5 s default wait is short for several.
                engine_kwargs = {"connect_args": {"timeout": 60}}
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    except Exception as error:  # SQLAlchemy, the journal and the file system each raise their own
        raise ValueError(f"cannot open the study storage {storage!r} ({type(error).__name__}: {error}); give "
                         "sqlite:///path.db, another SQLAlchemy database URL, or a journal file path") from error


def describe_storage(storage: str) -> str:
    """A storage as it may be written down: a journal file's absolute path, a database URL without password."""
    if "://" not in storage:
        return str(Path(storage).resolve())
    import sqlalchemy

    return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)


def open_study(spec: StudySpec, config: Mapping):
    """Create the study (maximising), or load it and check that it was made with the same ``config``
    (plain JSON values); a study made for another configuration is a ValueError."""
    optuna = import_optuna()
    storage = open_storage(spec.storage, spec.heartbeat_interval, spec.grace_period)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get(_CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(_CONFIG_ATTR, dict(config))
    elif stored != config:
        differ = sorted(key for key in {*stored, *config} if stored.get(key) != config.get(key))
        raise ValueError(f"study {spec.name!r} in {describe_storage(spec.storage)} was made with another "
                         f"{', '.join(differ)}; give another storage, or the same settings")
    return study


def tally(study) -> tuple[int, int]:
    """Finished trials (the budget spent) and those plus the running ones (the budget claimed)."""
    state = import_optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = sum(trial.state in (state.COMPLETE, state.PRUNED) for trial in trials)
    return done, done + sum(trial.state in (state.RUNNING, state.WAITING) for trial in trials)


class _OverBudget(Exception):
    """A trial created when every place of the budget was already claimed."""


class _Budgeted:
    """``objective`` behind the budget's claim, recording which worker ran each trial."""

    def __init__(self, objective: Callable, budget: int):
        self.objective, self.budget = objective, budget
        self.failed = import_optuna().trial.TrialState.FAIL
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial):
        # Numbers follow creation, so the trials before this one hold every place it could take.
        ahead = sum(other.number < trial.number and other.state != self.failed
                    for other in trial.study.get_trials(deepcopy=False))
        if ahead >= self.budget:
            trial.set_user_attr("over_budget", True)
            raise _OverBudget(f"trial {trial.number} started after the budget of {self.budget} was claimed")
        trial.set_user_attr("worker", self.worker)
        return self.objective(trial)


def _work(spec: StudySpec, objective: Callable, worker: int = 0, bar=None) -> None:
    """Run trials until the study's budget is finished, by this worker or others."""
    optuna = import_optuna()
    storage = open_storage(spec.storage, spec.heartbeat_interval, spec.grace_period)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    # A seed of its own per worker and per restart: the same one would redraw the same first trials.
    sampler_seed = int(np.random.SeedSequence([spec.seed, worker, len(study.trials)]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: a running trial counts as a poor result, so concurrent workers spread out.
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    budgeted = _Budgeted(objective, spec.budget)

    def after_trial(study, trial):
        done, claimed = tally(study)
        if bar is not None:
            bar.update(done - bar.n)
        if claimed >= spec.budget:
            study.stop()

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        done, claimed = tally(study)
        if bar is not None:
            bar.update(done - bar.n)
        if done >= spec.budget:
            return
        if claimed >= spec.budget:
            time.sleep(spec.heartbeat_interval)  # the last places run elsewhere; one may still fail
            continue
        study.optimize(budgeted, n_trials=spec.budget - claimed, catch=(_OverBudget,), callbacks=[after_trial],
                       gc_after_trial=True)


def _worker_process(spec: StudySpec, objective: Callable, worker: int) -> None:
    """One of several local worker processes: one torch thread each, as the pipeline's parallel units."""
    import torch

    torch.set_num_threads(1)
    optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _work(spec, objective, worker)


def run_study(spec: StudySpec, objective: Callable, workers: int = 1, progress: bool = True):
    """Run ``objective`` on the study (made by :func:`open_study`) until its budget is finished; return it.

    ``workers > 1`` runs that many local processes (``objective`` must then be picklable); 1 runs here.
    ``progress`` shows the study's finished trials.
    """
    optuna = import_optuna()
    study = optuna.load_study(study_name=spec.name,
                              storage=open_storage(spec.storage, spec.heartbeat_interval, spec.grace_period))
    with tqdm(total=spec.budget, initial=tally(study)[0], desc=spec.name, unit="trial", disable=not progress) as bar:
        if workers == 1:
            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # the bar says what the per-trial lines would
            try:
                _work(spec, objective, bar=bar)
            finally:
                optuna.logging.set_verbosity(verbosity)
            return study
        # spawn, not fork: torch's threads do not survive a fork.
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_worker_process, args=(spec, objective, k), name=f"ner-tune-{k}")
                     for k in range(workers)]
        try:
            for process in processes:
                process.start()
            while any(process.is_alive() for process in processes):
                processes[0].join(timeout=1.0)
                bar.update(tally(study)[0] - bar.n)
        finally:
            for process in processes:
                if process.is_alive():  # the parent stops (Ctrl-C, an error): so do its workers
                    process.terminate()
                process.join()
        failed = [f"{process.name} (exit code {process.exitcode})" for process in processes if process.exitcode]
        if failed:
            raise RuntimeError(f"worker(s) {', '.join(failed)} of study {spec.name} failed (see their messages "
                               "above); rerun to resume the study")
        bar.update(tally(study)[0] - bar.n)
    return study
