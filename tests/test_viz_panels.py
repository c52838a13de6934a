"""The paper-layout panels of ner.viz.latents and ner.viz.matrices, on small synthetic inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ner.viz import latents, matrices

TRIAL_LENGTH = 4


def synthetic_cache(rotation=None, trials_per_direction=2, seed=0):
    """Train and test splits of 8 directions whose latents lie on a circle by angle, then rotated."""
    rng = np.random.default_rng(seed)

    def split():
        angles = np.repeat(np.tile(np.arange(8) * 45.0, trials_per_direction), TRIAL_LENGTH)
        radius = np.tile(np.linspace(0.2, 1.0, TRIAL_LENGTH), 8 * trials_per_direction)
        points = np.column_stack([radius * np.cos(np.deg2rad(angles)), radius * np.sin(np.deg2rad(angles)), radius])
        points += rng.normal(scale=0.01, size=points.shape)
        return points @ (np.eye(3) if rotation is None else rotation), np.column_stack([np.zeros((len(angles), 2)), angles])

    (train, train_labels), (test, test_labels) = split(), split()
    return {"train_embedding": train, "train_labels": train_labels, "test_embedding": test,
            "test_labels": test_labels, "trial_length": np.array(TRIAL_LENGTH)}


def rotation_about_z(degrees):
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_alignment_brings_a_rotated_session_onto_the_anchor():
    caches = {"Chewie_20161007_M1": synthetic_cache(), "Chewie_20150629_M1": synthetic_cache(rotation_about_z(90), seed=1)}
    stages = latents.stage_latents(caches, "Chewie_20161007_M1")
    anchor_averages = stages["Chewie_20161007_M1"]["before"][2]
    before, after = (stages["Chewie_20150629_M1"][stage][2] for stage in latents.STAGES)
    assert np.abs(before - anchor_averages).max() > 0.5
    assert np.abs(after - anchor_averages).max() < 0.05


def test_latents_grid_has_a_dated_column_per_session_and_two_rows_per_method():
    units = ["Chewie_20150629_M1", "Chewie_20161007_M1"]
    caches = {unit: synthetic_cache(rotation_about_z(30 * k), seed=k) for k, unit in enumerate(units)}
    stages = {method: latents.stage_latents(caches, units[-1]) for method in ("ner", "cebra3d", "pivae")}
    fig = latents.draw_latents(stages, units[-1])
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == len(latents.STAGES) * 3 * 2 * len(units)
    titles = [ax.get_title() for ax in panels if ax.get_title()]
    assert len(titles) == len(latents.STAGES) * len(units)  # one per column, on the first row
    assert sum("2015-06-29" in t for t in titles) == 2 and sum("2016-10-07" in t for t in titles) == 2
    row_labels = [text.get_text() for ax in panels for text in ax.texts]
    assert sum(label.startswith("NER\n") for label in row_labels) == 2 * len(latents.STAGES)
    assert sum(ax.name == "polar" for ax in fig.axes) == 1  # one colour-wheel key per figure
    plt.close(fig)


def test_session_dates_and_paper_keys():
    assert latents.session_date("Chewie_20161007_PMd") == "2016-10-07"
    assert matrices.paper_key("Chewie_20161007_PMd") == "161007"
    assert matrices.paper_key("Chewie_20161007_PMd", tagged=True) == "161007PM"


def synthetic_table(units, methods=("ner", "cebra3d", "pivae")):
    rng = np.random.default_rng(0)
    shape = (len(methods), len(units), len(units))
    table = {"methods": np.array(methods), "units": np.array(units)}
    for decoder in ("linear", "knn"):
        for metric in matrices.METRICS:
            table[f"{decoder}_{metric}"] = rng.uniform(0.1, 0.95, shape)
        table[f"{decoder}_accuracy_per_bin"] = rng.uniform(0, 1, (*shape, 5))
    return table


def test_a_matrix_row_shares_one_colour_scale_and_titles_its_means():
    units = ["Han_20171201_S1", "Han_20171204_S1", "Han_20171207_S1"]
    table = synthetic_table(units)
    fig, axes = plt.subplots(1, 3)
    matrices.draw_matrix_row(axes, table, units, "linear", ["ner", "cebra3d", "pivae"], "peak_accuracy")
    images = [ax.images[0] for ax in axes]
    assert {image.get_clim() for image in images} == {(0, 100)}
    assert len(fig.axes) == 4  # three matrices and one colour bar
    diagonal, off = matrices.means(table["linear_peak_accuracy"][1])
    assert np.isclose(off, (table["linear_peak_accuracy"][1].sum() - np.trace(table["linear_peak_accuracy"][1])) / 6)
    assert f"diag {diagonal * 100:.1f}% · off {off * 100:.1f}%" in axes[1].get_title()
    assert "paper" not in axes[1].get_title()
    plt.close(fig)


def test_titles_quote_the_papers_means_over_all_and_shared_units():
    units = ["Chewie_20150629_M1", "Chewie_20161007_M1"]
    table = synthetic_table(units)
    names = ["150313", "150629", "161007"]
    stored = np.array([[0.5, 0.1, 0.2], [0.3, 0.9, 0.4], [0.6, 0.7, 0.8]])
    paper = {"ner": {"names": names, **{metric: stored for metric in matrices.METRICS}}}
    fig, axes = plt.subplots(1, 1, squeeze=False)
    matrices.draw_matrix_row(axes[0], table, units, "linear", ["ner"], "position_r2", paper=paper)
    title = axes[0, 0].get_title()
    assert "paper diag 0.73 · off 0.38" in title
    assert "paper on our 2: diag 0.85 · off 0.55" in title
    mean_all, per_unit = matrices.paper_diagonal(paper, "ner", "position_r2", units)
    assert np.isclose(mean_all, 2.2 / 3) and np.allclose(per_unit, [0.9, 0.8])
    plt.close(fig)


def test_without_the_reference_folder_there_are_no_paper_values(tmp_path, monkeypatch):
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path))  # nothing fetched there
    assert matrices.paper_results_dir() is None
    assert matrices.paper_matrices("fig5") is None
    caption = matrices.paper_caption(["Chewie_20161007_M1"], None)
    assert "ner fetch --paper-results" in caption and "NER_REFERENCE_DIR" in caption


def test_a_row_needs_one_axis_per_method():
    units = ["Han_20171201_S1", "Han_20171204_S1"]
    fig, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="3 methods need as many axes"):
        matrices.draw_matrix_row(axes, synthetic_table(units), units, "knn", ["ner", "cebra3d", "pivae"], "velocity_r2")
    plt.close(fig)


def planar(cache, degrees=0.0):
    """The first two latent columns of ``cache``, rotated by ``degrees``: a 2-D embedding such as UMAP's."""
    rotation = rotation_about_z(degrees)[:2, :2]
    return {**cache, "train_embedding": cache["train_embedding"][:, :2] @ rotation,
            "test_embedding": cache["test_embedding"][:, :2] @ rotation}


def test_two_dimensional_latents_are_drawn_in_plain_axes_and_aligned():
    units = ["Chewie_20150629_M1", "Chewie_20161007_M1"]
    caches = {unit: planar(synthetic_cache(seed=k), 60 * (1 - k)) for k, unit in enumerate(units)}
    stages = latents.stage_latents(caches, units[-1])
    before, after = (stages[units[0]][stage][2] for stage in latents.STAGES)
    assert before.shape == (8, TRIAL_LENGTH, 2)
    assert np.abs(after - stages[units[-1]]["before"][2]).max() < 0.05 < np.abs(before - after).max()
    fig = latents.draw_latents({"umap": stages}, units[-1])
    panels = [ax for ax in fig.axes if ax.name != "polar"]
    assert len(panels) == len(latents.STAGES) * 2 * len(units) and {ax.name for ax in panels} == {"rectilinear"}
    # Axes are made unit by unit, points then averages: panels[1] is the first unit's averages, before alignment,
    # one line per direction through its average.
    lines = [np.column_stack(line.get_data()) for line in panels[1].lines]
    np.testing.assert_allclose(np.stack(lines), before)
    assert panels[0].get_xticks().size == 0 and "UMAP\nsingle-bin points" in [t.get_text() for t in panels[0].texts]
    plt.close(fig)


def test_latents_without_an_anchor_are_one_block_and_can_be_averages_only():
    units = ["Chewie_20150629_M1", "Chewie_20161007_M1"]
    caches = {unit: synthetic_cache(rotation_about_z(30 * k), seed=k) for k, unit in enumerate(units)}
    stages = latents.stage_latents(caches)
    assert all(list(stages[unit]) == ["before"] for unit in units)
    fig = plt.figure()
    parent = fig.subfigures(1, 2)[0]  # drawn into a subfigure, as beside other panels
    assert latents.draw_latents({"pca": stages, "dpca": stages}, fig=parent, rows=("averages",), key=False) is parent
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == 2 * len(units)  # one row per method
    assert not any(ax.name == "polar" for ax in fig.axes)
    titles = [ax.get_title() for ax in panels if ax.get_title()]
    assert titles == ["2015-06-29", "2016-10-07"]  # no anchor to mark
    assert all("single-bin" not in t.get_text() for ax in panels for t in ax.texts)
    plt.close(fig)
    with pytest.raises(ValueError, match="anchor"):
        latents.draw_latents({"ner": latents.stage_latents(caches, units[-1])})
