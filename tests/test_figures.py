"""What the notebooks share: cache lookup, trial averages, alignment for display, panel helpers."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ner.data import synthetic_session
from ner.viz import figures, plotting


def cache_of(embedding_train, embedding_test, session):
    return {"train_embedding": embedding_train, "test_embedding": embedding_test,
            "train_labels": session.train.labels, "test_labels": session.test.labels,
            "trial_length": np.int64(session.trial_length)}


@pytest.fixture(scope="module")
def session():
    return synthetic_session(n_trials=80, n_neurons=10, trial_length=10, seed=3)


def test_trial_average_puts_directions_first_with_their_angles(session):
    labels = session.train.labels
    latent = np.column_stack([labels[:, 2], labels[:, 0], labels[:, 1]])  # first dim = the angle itself
    averages, angles = figures.trial_average(latent, labels, session.trial_length)
    assert averages.shape == (8, session.trial_length, 3)
    np.testing.assert_allclose(averages[:, 0, 0], angles)  # each direction's average sits at its angle
    assert np.all(np.diff(angles) > 0)


def test_short_names_and_clear_errors_for_missing_rows_and_caches(tmp_path):
    assert figures.short_name("Chewie_20161007_M1") == "C161007 M1"
    table = {"methods": np.array(["ner", "pca"])}
    assert figures.method_rows(table, ["pca", "ner"]) == [1, 0]
    with pytest.raises(KeyError, match="no cebra16d .*ner reproduce --methods cebra16d"):
        figures.method_rows(table, ["ner", "cebra16d"])
    with pytest.raises(FileNotFoundError, match="ner reproduce --methods ner --sessions S_1 --areas M1"):
        figures.embedding("ner", "S_1", "M1", root=tmp_path)


def test_accuracy_bands_are_the_standard_error_of_the_mean():
    curves = np.array([[[0.2, 0.5], [0.4, 0.5], [0.9, 0.8]]])  # 1 method x 3 sessions x 2 bins
    fig, ax = plt.subplots()
    plotting.plot_accuracy_over_time(ax, curves, ["NER"], bin_ms=30)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    sem = np.std(curves[0] * 100, axis=0, ddof=1) / np.sqrt(3)  # ddof=1: the sample standard deviation
    mean = curves[0].mean(axis=0) * 100
    np.testing.assert_allclose([band.min(), band.max()], [(mean - sem).min(), (mean + sem).max()])
    plt.close(fig)


def test_paired_scores_draw_the_range_over_seeds_where_there_are_several():
    per_seed = np.array([[[0.5, 0.7, 0.6], [0.8, np.nan, np.nan]],   # method 0: session 0 has 3 seeds, 1 has one
                         [[0.2, 0.4, np.nan], [np.nan] * 3]])        # method 1: 2 seeds; nothing for session 1
    fig, ax = plt.subplots()
    plotting.plot_paired_scores(ax, [[0.6, 0.8], [0.3, np.nan]], ["a", "b"], "score", per_seed=per_seed)
    ranges = sorted((tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax.lines
                    if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1])
    assert ranges == [((0, 0), (0.5, 0.7)), ((1, 1), (0.2, 0.4))]
    plt.close(fig)


def test_paired_scores_print_medians_and_the_papers_value_under_the_names_not_on_the_data():
    fig, ax = plt.subplots()
    medians = plotting.plot_paired_scores(ax, [[0.6, 0.8, 0.7], [0.3, 0.1, np.nan]], ["NER", "UMAP"], "score",
                                          paper=[0.9, np.nan])
    np.testing.assert_allclose(medians, [0.7, 0.2])
    assert not ax.texts  # nothing drawn over the bars and points
    assert [t.get_text() for t in ax.get_xticklabels()] == ["NER\n0.70\n(paper 0.90)", "UMAP\n0.20"]
    plt.close(fig)


def test_constrained_layouts_are_saved_snapped_and_keep_their_engine(tmp_path):
    fig, axes = plt.subplots(2, 2, layout="constrained")
    fig.colorbar(axes[0, 0].imshow(np.eye(3)), ax=axes[0, 0])
    for ax in axes.ravel():
        ax.set_title("a title that takes room")
    engine = fig.get_layout_engine()
    plotting.save_figure(fig, tmp_path / "snapped", formats=("pdf",))
    assert fig.get_layout_engine() is engine
    for ax in fig.axes:
        bounds = np.array(ax.get_position(original=True).bounds)
        assert np.abs(bounds - np.round(bounds, 9)).max() < 1e-14  # on the 1e-9 grid, up to the width's subtraction
        assert ax.get_in_layout()
    assert (tmp_path / "snapped.pdf").read_bytes().startswith(b"%PDF")
    plt.close(fig)


def test_kernels_get_the_figure_folders_absolute(tmp_path, monkeypatch):
    from ner.viz.notebooks import kernel_environment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NER_REFERENCE_DIR", "reference")
    monkeypatch.setenv("NER_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("NER_UNRELATED", "relative")
    monkeypatch.delenv("NER_CACHE_DIR", raising=False)
    environment = kernel_environment()
    assert environment["NER_REFERENCE_DIR"] == str(tmp_path / "reference")
    assert environment["NER_FIGURES_DIR"] == str(tmp_path / "figures")
    assert environment["NER_UNRELATED"] == "relative" and "NER_CACHE_DIR" not in environment
