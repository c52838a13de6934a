"""`ner tune`: the search space, the validation split, no test trial read, shared and resumed studies, the record."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from ner.cli import main
from ner.data import synthetic_session
from ner.data.sessions import Session
from ner.data.synthetic import write_session_mat
from ner.methods import make_method
from ner.workflow import studies
from ner.workflow import tune as tuning
from ner.workflow.tune import (
    DEFAULT_SPACE,
    SearchSpace,
    read_tuning,
    split_training,
    tune,
    tuning_path,
)

optuna = pytest.importorskip("optuna")  # the extra `tune`; ner's modules import it only when a study opens

State = optuna.trial.TrialState
SPACE = SearchSpace(temperature=(0.5, 2.0), time_offsets=(1, 3), learning_rate=(1e-3, 1e-2),
                    num_hidden_units=(8, 16), batch_size=(32, 64))
# Tiny trainings; heartbeats every second, so a killed worker's trial is stale after 2 s.
FAST = dict(iterations=5, device="cpu", validation_fraction=0.3, space=SPACE, progress=False,
            heartbeat_interval=1, grace_period=2)
STUDY = "ner_synthetic_seed2_M1_5it"


@pytest.fixture(scope="module")
def session():
    # 40 training trials: 28 to fit, 12 to validate, each part holding all 8 directions.
    return synthetic_session(n_trials=50, n_neurons=10, trial_length=20, seed=2)


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    # Large enough for the default batch sizes (up to 1024 of 2040 sub-training bins).
    path = tmp_path_factory.mktemp("sessions") / "synthetic_seed3_neural_con_dis_index.mat"
    return write_session_mat(synthetic_session(n_trials=80, n_neurons=10, trial_length=40, seed=3), path)


def trials_of(storage, name=STUDY):
    return optuna.load_study(study_name=name, storage=studies.open_storage(storage)).trials


def in_space(params, space=SPACE):
    return (space.temperature[0] <= params["temperature"] <= space.temperature[1]
            and space.time_offsets[0] <= params["time_offsets"] <= space.time_offsets[1]
            and space.learning_rate[0] <= params["learning_rate"] <= space.learning_rate[1]
            and params["num_hidden_units"] in space.num_hidden_units and params["batch_size"] in space.batch_size)


def test_validation_is_the_last_whole_training_trials(session):
    train = session.train
    fit, validation = split_training(train, 0.3)
    assert (fit.n_trials, validation.n_trials) == (28, 12)
    fit_ids, validation_ids = np.unique(fit.trial_ids), np.unique(validation.trial_ids)
    assert fit_ids.tolist() == list(range(28)) and validation_ids.tolist() == list(range(28, 40))
    assert not set(validation_ids) & set(np.unique(session.test.trial_ids))
    for part in (fit, validation):  # whole trials: one trial id per block of trial_length bins
        blocks = part.trial_ids.reshape(-1, part.trial_length)
        assert (blocks == blocks[:, :1]).all()
    assert np.array_equal(np.vstack([fit.neural, validation.neural]), train.neural)
    for fraction in (0, 1, 1.5):
        with pytest.raises(ValueError, match="validation_fraction"):
            split_training(train, fraction)


def test_suggestions_stay_in_the_search_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [SPACE.suggest(study.ask()) for _ in range(200)]
    assert all(in_space(params) for params in drawn)
    # Every choice and both ends of the ranges are reached: the space is searched, not one point.
    assert {p["batch_size"] for p in drawn} == {32, 64} and {p["time_offsets"] for p in drawn} == {1, 2, 3}
    rates = [p["learning_rate"] for p in drawn]
    assert min(rates) < 2e-3 and max(rates) > 5e-3
    with pytest.raises(ValueError, match="batch_size"):
        SearchSpace(batch_size=())


class TrainOnly(Session):
    """A session whose test trials cannot be read."""

    @property
    def test(self):
        raise AssertionError("the sweep read the test trials")


def test_the_sweep_never_reads_a_test_trial(session, tmp_path, monkeypatch):
    spy = TrainOnly(name=session.name, area=session.area, neural=session.neural, labels=session.labels,
                    trial_length=session.trial_length)
    with pytest.raises(AssertionError):
        spy.test
    seen = []
    real_build = tuning.build_method

    def spying_build(*args, **kwargs):
        estimator = real_build(*args, **kwargs)
        fit, transform = estimator.fit, estimator.transform

        def spied_fit(X, y, **kw):
            seen.append(("fit", X, y, estimator.get_params(deep=False)))
            return fit(X, y, **kw)

        def spied_transform(X, **kw):
            seen.append(("transform", X, None, None))
            return transform(X, **kw)

        estimator.fit, estimator.transform = spied_fit, spied_transform
        return estimator

    monkeypatch.setattr(tuning, "build_method", spying_build)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    record = tune(spy, "ner", n_trials=3, storage=storage, out_dir=tmp_path, seed=7, **FAST)
    fit, validation = split_training(session.train, 0.3)
    test_rows = {row.tobytes() for row in session.test.neural}
    fits = [entry for entry in seen if entry[0] == "fit"]
    assert len(fits) == 3 and len(seen) == 9
    for kind, X, y, _ in seen:
        assert not {row.tobytes() for row in X} & test_rows
        expected = [fit.neural] if kind == "fit" else [fit.neural, validation.neural]
        assert any(X.shape == part.shape and np.array_equal(X, part) for part in expected)
        assert y is None or np.array_equal(y, fit.labels)
    trials = [t for t in trials_of(storage) if t.state == State.COMPLETE]
    # Each trial trained with its drawn parameters, the fixed iterations and the fixed, recorded seed.
    for trial, (_, _, _, params) in zip(trials, fits):
        assert in_space(trial.params)
        assert {key: params[key] for key in trial.params} == trial.params
        assert params["max_iterations"] == 5 and params["seed"] == 7 and trial.user_attrs["seed"] == 7
        assert -10 < trial.value <= 1 and 0 <= trial.user_attrs["peak_accuracy"] <= 1
        assert np.isfinite(trial.user_attrs["position_r2"])
    assert record["validation_trial_ids"] == [28, 39] and record["n_trials"] == 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_started_once_the_budget_is_claimed_is_failed_unrun(tmp_path):
    spec = studies.StudySpec("claims", f"sqlite:///{tmp_path / 'claims.db'}", budget=2)
    study = studies.open_study(spec, {"what": "claims"})
    held = [study.ask(), study.ask()]  # two running trials (other workers') hold both places
    calls = []
    budgeted = studies._Budgeted(lambda trial: calls.append(trial.number) or 0.5, budget=2)
    study.optimize(budgeted, n_trials=1, catch=(studies._OverBudget,))
    late = study.trials[-1]
    assert late.state == State.FAIL and late.user_attrs["over_budget"] and calls == []
    study.tell(held[0], state=State.FAIL)  # a worker died: its place is free again
    study.optimize(budgeted, n_trials=1, catch=(studies._OverBudget,))
    assert calls == [3] and study.trials[-1].state == State.COMPLETE
    assert studies.tally(study) == (1, 2)


def test_two_worker_processes_share_one_study_and_spend_exactly_the_budget(session, tmp_path):
    storage = str(tmp_path / "studies.journal")  # a journal file, with the heartbeats given here
    record = tune(session, "ner", n_trials=6, storage=storage, out_dir=tmp_path, workers=2,
                  **{**FAST, "iterations": 40})
    trials = trials_of(storage, "ner_synthetic_seed2_M1_40it")
    finished = [t for t in trials if t.state == State.COMPLETE]
    assert len(finished) == 6 == record["n_trials"]
    assert not [t for t in trials if t.state == State.RUNNING]
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)


CHILD = """
import sys, time
import ner.workflow.tune as tuning
from ner.data import synthetic_session
from ner.workflow.tune import SearchSpace, tune

real = tuning.validation_scores
def slow(*args, **kwargs):  # long trials, so that the kill lands inside one
    time.sleep(1.0)
    return real(*args, **kwargs)
tuning.validation_scores = slow
space = SearchSpace(temperature=(0.5, 2.0), time_offsets=(1, 3), learning_rate=(1e-3, 1e-2),
                    num_hidden_units=(8, 16), batch_size=(32, 64))
tune(synthetic_session(n_trials=50, n_neurons=10, trial_length=20, seed=2), "ner", iterations=5, n_trials=5,
     storage=sys.argv[1], out_dir=sys.argv[2], device="cpu", validation_fraction=0.3, space=space,
     progress=False, heartbeat_interval=1, grace_period=2)
"""


def within(seconds, call):
    """``call()``'s result, failing the test (not hanging it) if it runs past ``seconds``."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a stale trial blocks the study"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_killed_worker_resumes_without_rerunning_or_a_stuck_trial(session, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), storage, str(tmp_path)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            try:
                states = [t.state for t in trials_of(storage)]
            except (KeyError, ValueError):  # the study is not created yet
                continue
            if states.count(State.COMPLETE) >= 2 and states[-1] == State.RUNNING:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()
    before = trials_of(storage)
    assert [t.state for t in before].count(State.RUNNING) == 1
    done_before = {t.number: (t.value, t.datetime_complete) for t in before if t.state == State.COMPLETE}
    assert 2 <= len(done_before) < 5

    calls = []
    real = tuning.validation_scores
    monkeypatch.setattr(tuning, "validation_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    record = within(90, lambda: tune(session, "ner", n_trials=5, storage=storage, out_dir=tmp_path, **FAST))
    after = trials_of(storage)
    assert len(calls) == 5 - len(done_before)  # nothing finished is run again
    assert [t.state for t in after].count(State.COMPLETE) == 5 == record["n_trials"]
    assert not [t for t in after if t.state == State.RUNNING]
    killed = next(t for t in before if t.state == State.RUNNING)
    assert after[killed.number].state == State.FAIL
    assert {t.number: (t.value, t.datetime_complete) for t in after if t.number in done_before} == done_before


def test_the_command_writes_records_that_read_back_and_reruns_nothing(session_file, tmp_path, capsys):
    command = ["tune", "--session", str(session_file), "--methods", "ner", "cebra3d", "--iterations", "5",
               "--trials", "2", "--out", str(tmp_path), "--device", "cpu", "--quiet"]
    assert main(command) == 0
    out = capsys.readouterr().out
    records = {}
    for name in ("ner", "cebra3d"):
        path = tuning_path(tmp_path, name, "synthetic_seed3", "M1")
        records[name] = read_tuning(tmp_path, name, "synthetic_seed3", "M1", iterations=5)
        assert records[name] == json.loads(path.read_text())
        assert records[name]["study_name"] == f"{name}_synthetic_seed3_M1_5it" and records[name]["n_trials"] == 2
        assert in_space(records[name]["params"], DEFAULT_SPACE) and f"{name} synthetic_seed3 M1" in out
        estimator = make_method(name, iterations=5, params=records[name]["params"])
        assert {key: estimator.get_params()[key] for key in records[name]["params"]} == records[name]["params"]
    assert main(command) == 0  # the finished studies are found again: no trial is added
    storage = tuning.default_storage(tmp_path)
    for name, record in records.items():
        assert len(trials_of(storage, record["study_name"])) == 2
        assert read_tuning(tmp_path, name, "synthetic_seed3", "M1")["params"] == record["params"]
    with pytest.raises(ValueError, match="5 iterations, not 6"):
        read_tuning(tmp_path, "ner", "synthetic_seed3", "M1", iterations=6)
    with pytest.raises(FileNotFoundError, match="ner tune"):
        read_tuning(tmp_path, "ner", "synthetic_seed3", "PMd")
    capsys.readouterr()
    assert main([*command[:-1], "--seed", "1", "--quiet"]) == 2  # the same study asked with another seed
    assert "another seed" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--methods", "pca"], "'pca' is not of the CEBRA family"),
    (["--trials", "0"], "budget"),
    (["--workers", "0"], "workers must be a positive integer"),
    (["--storage", "nosuchdb://somewhere"], "cannot open the study storage"),
    (["--storage", "sqlite:///{tmp}/garbage.db"], "cannot open the study storage"),
    (["--validation", "0.9"], "reach directions"),
])
def test_bad_input_is_a_clear_error(session_file, tmp_path, capsys, arguments, message):
    (tmp_path / "garbage.db").write_text("not a database\n" * 100)
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    assert main(["tune", "--session", str(session_file), "--iterations", "5", "--out", str(tmp_path),
                 "--device", "cpu", "--quiet", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "tuning").glob("*.json"))


def test_optuna_is_optional(session, monkeypatch, capsys):
    code = ("import sys, ner, ner.cli, ner.workflow.tune; ner.cli.build_parser(); "
            "assert 'optuna' not in sys.modules, 'optuna imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an import finds where it is not installed
    with pytest.raises(ImportError, match=r"neural-embeddings-rank\[tune\]"):
        tune(session, "ner", n_trials=1, **FAST)
