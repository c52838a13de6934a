"""The paper's panels (ner.viz.panels) on small synthetic inputs: hand paths, titles carrying their numbers,
legends outside the data, the reader of the paper's stored curves."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

from ner.viz import panels  # noqa: E402
from ner.viz.plotting import angle_colors  # noqa: E402


def test_hand_paths_are_per_trial_cumulative_velocity_from_zero():
    rng = np.random.default_rng(0)
    velocity = rng.normal(size=(3 * 5, 2)) * 100  # 3 trials of 5 bins, mm/s
    paths = panels.hand_paths(velocity, 5)
    assert paths.shape == (3, 6, 2)
    np.testing.assert_array_equal(paths[:, 0], 0)  # every trial starts at the centre, not where the last ended
    np.testing.assert_allclose(np.diff(paths, axis=1), velocity.reshape(3, 5, 2) * panels.BIN_S)
    np.testing.assert_allclose(paths[1, -1], velocity[5:10].sum(axis=0) * panels.BIN_S)


def test_draw_hand_paths_draws_one_line_per_trial_in_its_angle_colour():
    velocity = np.tile([[10.0, 0.0]], (8 * 4, 1))
    angles = np.repeat(np.arange(8) * 45.0, 4)
    fig, ax = plt.subplots()
    panels.draw_hand_paths(ax, velocity, angles, 4)
    assert len(ax.lines) == 8
    np.testing.assert_allclose([line.get_color()[:3] for line in ax.lines], angle_colors(np.arange(8) * 45.0)[:, :3])
    plt.close(fig)


def test_velocity_scatter_title_carries_the_r2_of_its_points():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=200) * 100
    predicted = truth + rng.normal(size=200) * 50
    fig, ax = plt.subplots()
    score = panels.draw_velocity_scatter(ax, truth, predicted, "x", paper=0.84)
    assert score == pytest.approx(r2_score(truth, predicted))
    assert f"R² {r2_score(truth, predicted):.2f} (paper 0.84)" in ax.get_title()
    assert "mm/s" in ax.get_xlabel()
    plt.close(fig)


def test_r2_matches_sklearn_on_two_columns():
    rng = np.random.default_rng(2)
    truth, predicted = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    assert panels.r2(truth, predicted) == pytest.approx(r2_score(truth, predicted))


def test_session_legend_gives_medians_ours_and_papers_and_sits_outside():
    values = np.array([[0.8, 0.9, 0.7], [0.2, 0.3, 0.1]])
    paper = np.array([[0.85, np.nan, 0.75], [np.nan, np.nan, np.nan]])
    fig, ax = plt.subplots()
    medians = panels.draw_sessions(ax, values, ["ner", "cebra3d"], ["160929", "161007", "171201"], paper,
                                   groups=[(0, "Chewie"), (2, "Han")], labels=["NER", "CEBRA"])
    assert medians["ner"] == (pytest.approx(0.8), pytest.approx(0.8))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "NER 0.80 (paper 0.80)" in texts and "CEBRA 0.20" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["160929", "161007", "171201"]
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1  # to the right of the data, not on it
    plt.close(fig)


def test_accuracy_is_drawn_in_percent_with_the_papers_peak():
    curves = np.array([[[0.1, 0.5, 0.9], [0.3, 0.7, 0.7]]])  # 1 method x 2 sessions x 3 bins
    fig, ax = plt.subplots()
    peaks = panels.draw_accuracy(ax, curves, ["ner"], ["NER"], 30, paper={"ner": np.array([[10.0, 60.0, 95.0]])})
    assert peaks["ner"] == pytest.approx(80.0)
    assert "NER 80% (paper 95%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_paper_accuracy_reads_the_reference_folder_or_returns_none(tmp_path, monkeypatch):
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "data"))  # nothing fetched there
    assert panels.paper_results_dir() is None
    assert panels.paper_accuracy("ner", "M1", "Chewie2016") is None
    folder = tmp_path / "upstream_data_NER" / "Fig4" / "NPZ_M1"
    folder.mkdir(parents=True)
    stored = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    np.savez(folder / "NER_Chewie2016.npz", acc_time_2D=stored)
    monkeypatch.setenv("NER_REFERENCE_DIR", str(tmp_path))
    assert panels.paper_results_dir() == tmp_path / "upstream_data_NER"
    np.testing.assert_array_equal(panels.paper_accuracy("ner", "M1", "Chewie2016", "test"), stored[:, 1])
    assert panels.paper_accuracy("ner", "PMd", "Chewie2016") is None  # no such table there


def test_published_values_pick_the_unit_and_column():
    table = {"columns": np.array(["train_velocity_r2", "test_position_r2"]), "methods": np.array(["ner", "ner"]),
             "sessions": np.array(["A_1", "B_2"]), "areas": np.array(["M1", "M1"]),
             "published": np.array([[0.1, 0.2], [0.3, 0.4]])}
    np.testing.assert_array_equal(panels.published_values(table, "ner", ["B_2", "C_3"], "M1", "test_position_r2"),
                                  [0.4, np.nan])
    assert np.isnan(panels.published_values(None, "ner", ["A_1"], "M1", "train_velocity_r2")).all()
