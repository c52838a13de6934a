import numpy as np
import pytest
from scipy.stats import special_ortho_group

from ner.evaluation.alignment import fit_alignment, procrustes
from ner.evaluation.trials import trial_averages

T, D = 30, 3


def averages(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, T, D))  # directions x bins x dims


def rotate(avg, rotation, shift=0.0):
    return avg @ rotation + shift


def test_known_rotation_recovered():
    source = averages()
    rotation = special_ortho_group.rvs(D, random_state=1)
    fit = fit_alignment(source, rotate(source, rotation, shift=2.5))
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-6)
    flat = source[0]
    np.testing.assert_allclose(fit.transform(flat), flat @ rotation + 2.5, atol=1e-6)


def test_reflection_recovered_or_excluded():
    source = averages(2)
    reflection = special_ortho_group.rvs(D, random_state=3) @ np.diag([1.0, 1.0, -1.0])
    target = rotate(source, reflection)
    allowed = fit_alignment(source, target)
    np.testing.assert_allclose(allowed.rotation, reflection, atol=1e-6)
    proper = fit_alignment(source, target, allow_reflection=False)
    assert np.linalg.det(proper.rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(proper.rotation @ proper.rotation.T, np.eye(D), atol=1e-10)


def test_proper_procrustes_is_best_rotation():
    rng = np.random.default_rng(4)
    source, target = rng.normal(size=(50, D)), rng.normal(size=(50, D))
    best = procrustes(source, target, allow_reflection=False)
    err = np.linalg.norm(source @ best - target)
    for seed in range(50):
        other = special_ortho_group.rvs(D, random_state=seed)
        assert err <= np.linalg.norm(source @ other - target) + 1e-12


def test_trial_averages_per_direction():
    labels = np.concatenate([np.column_stack([np.zeros((4, 2)), np.full(4, 45.0 * (k % 8))]) for k in range(16)])
    embedding = np.repeat(np.arange(16.0), 4)[:, None]
    avg = trial_averages(embedding, labels, 4)
    assert avg.shape == (8, 4, 1)
    np.testing.assert_allclose(avg[:, 0, 0], [(k + k + 8) / 2 for k in range(8)])


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        fit_alignment(averages()[:7], averages()[:7])
    bad = averages()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_alignment(bad, averages())
