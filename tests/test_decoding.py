import numpy as np
import pytest
from sklearn.metrics import r2_score

from ner.evaluation.decoding import (
    TrialDecoder,
    accuracy_per_bin,
    decode_session,
    trial_positions,
)
from ner.data.labels import direction_classes

T = 20


def reaching(n_per_direction=4, noise=0.3, seed=0, dims=3):
    """Trials back to back; the embedding is a noisy linear image of the velocity."""
    rng = np.random.default_rng(seed)
    angles = np.repeat(np.arange(8) * 45.0, n_per_direction)
    rng.shuffle(angles)
    profile = np.sin(np.pi * (np.arange(T) + 0.5) / T)
    rows = []
    for angle in angles:
        v = 10 * np.outer(profile, [np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        rows.append(np.column_stack([v, np.full(T, angle)]))
    labels = np.concatenate(rows)
    mixing = np.random.default_rng(1234).normal(size=(2, dims))  # shared by all splits
    embedding = labels[:, :2] @ mixing + noise * rng.normal(size=(len(labels), dims))
    return embedding, labels


def test_linear_decoding_recovers_velocity_position_and_direction():
    train, test = reaching(seed=1), reaching(seed=2)
    r = decode_session(*train, *test, trial_length=T)
    assert r["train_velocity_r2"] > 0.95 and r["test_velocity_r2"] > 0.95
    assert r["test_position_r2"] > 0.95
    assert r["test_accuracy_per_bin"].shape == (T,)
    assert r["test_peak_accuracy"] == pytest.approx(r["test_accuracy_per_bin"].max())
    assert r["test_peak_accuracy"] > 0.9
    # The predicted velocity returned is what the R^2 was computed from.
    assert r2_score(test[1][:, :2], r["test_predicted_velocity"]) == pytest.approx(r["test_velocity_r2"])


def test_legacy_swaps_only_test_velocity_r2():
    train, test = reaching(seed=1, noise=3.0), reaching(seed=2, noise=3.0)
    right = decode_session(*train, *test, trial_length=T)
    legacy = decode_session(*train, *test, trial_length=T, legacy=True)
    swapped = r2_score(legacy["test_predicted_velocity"], test[1][:, :2])
    assert legacy["test_velocity_r2"] == pytest.approx(swapped)
    assert legacy["test_velocity_r2"] != pytest.approx(right["test_velocity_r2"], abs=1e-3)
    for key in ("train_velocity_r2", "test_position_r2", "test_peak_accuracy"):
        assert legacy[key] == pytest.approx(right[key])


def test_positions_restart_at_each_trial():
    velocity = np.ones((2 * T, 2))
    pos = trial_positions(velocity, T)
    assert pos[0, 0] == 1 and pos[T - 1, 0] == T and pos[T, 0] == 1


def test_accuracy_per_bin_counts_trials():
    truth = np.zeros(3 * T, int)
    pred = truth.copy()
    pred[0] = 1  # first bin of the first trial wrong
    acc = accuracy_per_bin(truth, pred, T)
    assert acc[0] == pytest.approx(2 / 3) and np.all(acc[1:] == 1)


def test_direction_classes():
    assert direction_classes([0, 45, 315, 360]).tolist() == [0, 1, 7, 0]


def test_knn_chooses_k_from_grid_on_training_data():
    train, test = reaching(seed=1), reaching(seed=2)
    r = decode_session(*train, *test, trial_length=T, method="knn", knn_grid=(1, 5, 15), cv=3)
    assert set(r["decoder"].n_neighbors_.values()) <= {1, 5, 15}
    assert r["test_velocity_r2"] > 0.8


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e, l: (e[:-1], l), "bins"),
        (lambda e, l: (e[:-3], l[:-3]), "does not divide"),
        (lambda e, l: (np.where(np.arange(len(e))[:, None] == 5, np.nan, e), l), "NaN"),
        (lambda e, l: (e[l[:, 2] != 90], l[l[:, 2] != 90]), "8 are needed"),
    ],
)
def test_bad_input_raises(mutate, message):
    train = mutate(*reaching(seed=1))
    with pytest.raises(ValueError, match=message):
        decode_session(*train, *reaching(seed=2), trial_length=T)


def test_knn_grid_larger_than_training_set_raises():
    e, l = reaching(n_per_direction=1)
    with pytest.raises(ValueError, match="shrink the grid"):
        TrialDecoder(method="knn", knn_grid=(1, len(e))).fit(e, l)
