import numpy as np
import pytest
import torch

from ner import NER
from ner.data import synthetic_session
from ner.model.checkpoint import remove

FAST = dict(max_iterations=30, batch_size=64, verbose=False, device="cpu", seed=0, learning_rate=3e-3)


@pytest.fixture(scope="module")
def sessions():
    return [synthetic_session(n_trials=48, n_neurons=units, seed=number)
            for number, units in enumerate((24, 30), start=1)]


class Killed(Exception):
    """Stands for the process being killed mid-fit."""


def _kill_at(step):
    def callback(num_steps, solver):
        if num_steps + 1 == step:
            raise Killed
    return callback


def _resumed(X, y, path, every, kill_at, **params):
    """A fit killed after ``kill_at`` steps, then fitted again from its checkpoint by a new estimator."""
    with pytest.raises(Killed):
        NER(**FAST, **params).fit(X, y, checkpoint=path, checkpoint_every=every,
                                  callback=_kill_at(kill_at), callback_frequency=1)
    assert path.exists()
    return NER(**FAST, **params).fit(X, y, checkpoint=path, checkpoint_every=every)


def _assert_same_fit(resumed, plain, embed):
    np.testing.assert_array_equal(resumed.solver_.log["total"], plain.solver_.log["total"])
    np.testing.assert_array_equal(embed(resumed), embed(plain))
    for (name, mine), (_, theirs) in zip(resumed.solver_.optimizer.state_dict()["state"].items(),
                                         plain.solver_.optimizer.state_dict()["state"].items()):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)


@pytest.mark.parametrize("exact_search", [True, False])
def test_a_killed_fit_resumes_to_the_uninterrupted_one(sessions, tmp_path, exact_search):
    session = sessions[0]
    plain = NER(**FAST, exact_search=exact_search).fit(session.neural, session.labels)
    resumed = _resumed(session.neural, session.labels, tmp_path / "fit.pt", every=10, kill_at=25,
                       exact_search=exact_search)
    assert len(resumed.solver_.log["total"]) == FAST["max_iterations"]
    _assert_same_fit(resumed, plain, lambda model: model.transform(session.neural))


def test_a_killed_multisession_fit_resumes_to_the_uninterrupted_one(sessions, tmp_path):
    X, y = [s.neural for s in sessions], [s.labels for s in sessions]
    plain = NER(**FAST).fit(X, y)
    resumed = _resumed(X, y, tmp_path / "fit.pt", every=7, kill_at=16)
    _assert_same_fit(resumed, plain, lambda model: model.transform(X[1], session_id=1))
    np.testing.assert_array_equal(resumed.anchor_embeddings_, plain.anchor_embeddings_)


def test_restarts_resume_each_from_its_own_checkpoint(sessions, tmp_path):
    session, path, steps = sessions[0], tmp_path / "fit.pt", FAST["max_iterations"]
    plain = NER(**FAST, restarts=2).fit(session.neural, session.labels)
    calls = []

    def kill_in_the_second_restart(num_steps, solver):
        calls.append(num_steps)
        if len(calls) == steps + 25:
            raise Killed
    with pytest.raises(Killed):
        NER(**FAST, restarts=2).fit(session.neural, session.labels, checkpoint=path, checkpoint_every=10,
                                    callback=kill_in_the_second_restart, callback_frequency=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.pt", "fit.pt.restart1"]
    resumed = NER(**FAST, restarts=2).fit(session.neural, session.labels, checkpoint=path, checkpoint_every=10)
    assert resumed.restart_losses_ == plain.restart_losses_
    np.testing.assert_array_equal(resumed.transform(session.neural), plain.transform(session.neural))
    remove(path)
    assert list(tmp_path.iterdir()) == []


def test_a_finished_checkpoint_returns_the_fit_without_training(sessions, tmp_path):
    session, path = sessions[0], tmp_path / "fit.pt"
    first = NER(**FAST).fit(session.neural, session.labels, checkpoint=path, checkpoint_every=np.int64(7))
    steps = []
    again = NER(**FAST).fit(session.neural, session.labels, checkpoint=path, checkpoint_every=7,
                            callback=lambda num_steps, solver: steps.append(num_steps), callback_frequency=1)
    assert steps == []
    np.testing.assert_array_equal(again.transform(session.neural), first.transform(session.neural))
    np.testing.assert_array_equal(again.solver_.log["total"], first.solver_.log["total"])


def test_a_checkpoint_of_other_parameters_or_data_is_refused(sessions, tmp_path):
    session, path = sessions[0], tmp_path / "fit.pt"
    NER(**FAST).fit(session.neural, session.labels, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint of a fit with other parameters; delete it"):
        NER(**{**FAST, "temperature": 0.5}).fit(session.neural, session.labels, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint of a fit with other data; delete it"):
        NER(**FAST).fit(session.neural[::-1].copy(), session.labels[::-1].copy(), checkpoint=path)
    NER(**{**FAST, "verbose": True}).fit(session.neural, session.labels, checkpoint=path)  # verbose changes nothing
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable NER training checkpoint"):
        NER(**FAST).fit(session.neural, session.labels, checkpoint=path)


@pytest.mark.parametrize("every", [0, -5, 2.5, True, "500"])
def test_bad_checkpoint_every_is_named(sessions, tmp_path, every):
    with pytest.raises(ValueError, match=f"checkpoint_every must be a positive integer, got {every!r}"):
        NER(**FAST).fit(sessions[0].neural, sessions[0].labels, checkpoint=tmp_path / "fit.pt",
                        checkpoint_every=every)
