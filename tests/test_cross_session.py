import numpy as np
import pytest
from scipy.stats import special_ortho_group

from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices
from ner.evaluation.statistics import compare_methods, friedman, off_diagonal, paired_ttest, repeated_measures_anova

T = 20


def reaching(seed, rotation, n_per_direction=3, noise=0.2):
    """Whole trials back to back; the embedding is a rotated, noisy copy of a label-driven latent."""
    rng = np.random.default_rng(seed)
    angles = rng.permutation(np.repeat(np.arange(8) * 45.0, n_per_direction))
    profile = np.sin(np.pi * (np.arange(T) + 0.5) / T)
    labels = np.concatenate([
        np.column_stack([10 * np.outer(profile, [np.cos(np.radians(a)), np.sin(np.radians(a))]), np.full(T, a)])
        for a in angles
    ])
    latent = np.column_stack([labels[:, :2], 5 * np.cos(np.radians(labels[:, 2]))])
    return latent @ rotation + noise * rng.normal(size=latent.shape), labels


def make_sessions(noise=0.2):
    out = {}
    for k in range(3):
        rotation = special_ortho_group.rvs(3, random_state=k)
        out[f"s{k}"] = SplitEmbedding(*reaching(10 * k, rotation, noise=noise), *reaching(10 * k + 1, rotation, noise=noise))
    return out


def test_alignment_makes_cross_session_as_good_as_same_session():
    result = cross_session_matrices(make_sessions(), T)
    assert result["velocity_r2"].shape == (3, 3)
    assert result["accuracy_per_bin"].shape == (3, 3, T)
    assert np.all(result["velocity_r2"] > 0.95)
    assert np.all(result["position_r2"] > 0.95)
    assert set(result["alignments"]) == {(a, b) for a in result["names"] for b in result["names"] if a != b}


def test_shared_space_needs_no_alignment_and_rotated_spaces_do():
    shared = cross_session_matrices(make_sessions(), T, align=False)
    assert shared["alignments"] == {} and not shared["aligned"]
    diagonal = np.eye(3, dtype=bool)
    # Each session here lives in its own rotation: unaligned, the off-diagonal decoders fail...
    assert np.all(shared["position_r2"][~diagonal] < 0.9)
    # ...while the same sessions in one latent space decode across sessions as well as within.
    common = {name: SplitEmbedding(*reaching(10 * k, np.eye(3)), *reaching(10 * k + 1, np.eye(3)))
              for k, name in enumerate(["a", "b", "c"])}
    result = cross_session_matrices(common, T, align=False)
    assert np.all(result["position_r2"] > 0.95)
    np.testing.assert_allclose(np.diag(result["velocity_r2"]), np.diag(shared["velocity_r2"]), atol=0.05)


def test_rows_are_the_decoder_session():
    sessions = make_sessions()
    s = sessions["s1"]
    # Shuffle s1's training embedding: its decoder (row 1) fails everywhere, its test data (column 1) does not.
    rng = np.random.default_rng(0)
    sessions["s1"] = SplitEmbedding(rng.permutation(s.train_embedding), s.train_labels, s.test_embedding, s.test_labels)
    pos = cross_session_matrices(sessions, T)["position_r2"]
    assert np.all(pos[1] < 0.5)
    assert pos[0, 1] > 0.9 and pos[2, 1] > 0.9


def test_knn_matrices():
    result = cross_session_matrices(make_sessions(), T, method="knn", knn_grid=(1, 5), cv=3)
    assert np.all(result["position_r2"] > 0.8)


def test_mismatched_dims_raise():
    sessions = make_sessions()
    s = sessions["s0"]
    sessions["s0"] = SplitEmbedding(s.train_embedding[:, :2], s.train_labels, s.test_embedding[:, :2], s.test_labels)
    with pytest.raises(ValueError, match="dimension"):
        cross_session_matrices(sessions, T)


def test_statistics():
    rng = np.random.default_rng(0)
    base = rng.normal(size=20)
    a, b, c = base + 1.0, base + rng.normal(scale=0.1, size=20), base + rng.normal(scale=0.1, size=20)
    t = paired_ttest(a, b)
    assert t["pvalue"] < 1e-6 and t["mean_difference"] > 0.5
    table = np.column_stack([a, b, c])
    anova = repeated_measures_anova(table)
    assert anova["df"] == (2, 38) and anova["pvalue"] < 1e-6
    # RM-ANOVA with two conditions is the squared paired t-test.
    assert repeated_measures_anova(table[:, :2])["statistic"] == pytest.approx(t["statistic"] ** 2)
    assert friedman(table)["pvalue"] < 1e-3
    out = compare_methods({"a": a, "b": b, "c": c})
    assert set(out["paired_ttest"]) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert off_diagonal(np.arange(9).reshape(3, 3)).tolist() == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="NaN"):
        friedman(np.where(table > 100, 0, table) * np.array([1, 1, np.nan]))
