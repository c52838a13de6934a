import numpy as np
import pytest
from sklearn.linear_model import Ridge

from ner.data import load_session, synthetic_session, write_session_mat

SUFFIX = "_neural_con_dis_index.mat"


@pytest.fixture(scope="module")
def session():
    return synthetic_session()


def test_shapes_and_defaults(session):
    assert (session.n_trials, session.n_units, session.trial_length) == (160, 60, 40)
    assert session.neural.shape == (6400, 60) and session.labels.shape == (6400, 3)
    assert session.neural.dtype == np.float32 and session.labels.dtype == np.float32
    assert (session.neural >= 0).all()


def test_deterministic_for_a_seed():
    a, b, c = synthetic_session(20, 10, seed=7), synthetic_session(20, 10, seed=7), synthetic_session(20, 10, seed=8)
    assert np.array_equal(a.neural, b.neural) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.neural, c.neural)


def test_eight_balanced_directions_constant_within_trials(session):
    per_trial = session.angle.reshape(session.n_trials, session.trial_length)
    assert (per_trial == per_trial[:, :1]).all()
    values, counts = np.unique(per_trial[:, 0], return_counts=True)
    assert values.tolist() == list(range(0, 360, 45)) and (counts == 20).all()


def test_reaches_point_at_their_target_with_bell_shaped_speed(session):
    velocity = session.velocity.reshape(session.n_trials, session.trial_length, 2) / 10.0  # cm/s
    speed = np.linalg.norm(velocity, axis=-1)
    peak = speed.max(axis=1)
    assert (peak > 15).all() and (peak < 60).all()
    assert (speed[:, 0] < 0.05 * peak).all() and (speed[:, -1] < 0.05 * peak).all()  # starts and ends at rest
    heading = np.degrees(np.arctan2(velocity[..., 1].sum(1), velocity[..., 0].sum(1)))
    target = session.angle.reshape(session.n_trials, -1)[:, 0]
    error = (heading - target + 180) % 360 - 180
    assert np.abs(error).max() < 20


def test_linear_decoder_recovers_velocity(session):
    train, test = session.train, session.test
    decoder = Ridge(alpha=1.0).fit(train.neural, train.velocity)
    assert decoder.score(test.neural, test.velocity) > 0.5


@pytest.mark.parametrize("trial_length", [40, 35])
def test_mat_round_trip(tmp_path, trial_length):
    original = synthetic_session(n_trials=16, n_neurons=8, trial_length=trial_length, seed=1)
    path = write_session_mat(original, tmp_path / (original.name + SUFFIX))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written atomically, nothing else left
    loaded = load_session(original.name, area="M1", data_dir=tmp_path)
    assert loaded.name == original.name and loaded.trial_length == trial_length
    np.testing.assert_array_equal(loaded.neural, original.neural)
    np.testing.assert_allclose(loaded.labels, original.labels, rtol=1e-6)
    assert loaded.sha256 is not None and loaded.path == path


def test_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="n_trials >= 1"):
        synthetic_session(n_trials=0)
