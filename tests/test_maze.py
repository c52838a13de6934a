"""MC_Maze end to end: a small maze NWB file -> ner.workflow.maze caches -> the Fig 8 and Fig 11 notebooks."""

import dataclasses
import hashlib
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from ner.cli import main
from ner.data.maze import SELECTIONS as PAPER_SELECTIONS
from ner.data.maze import Selection, parse_selection
from ner.evaluation.maze import decode_run
from ner.reference.maze import ORIGINAL
from ner.viz.maze import FETCH_COMMAND, HOW_TO, REFERENCE_ENV, draw_figure, load_runs
from ner.workflow.maze import OURS, mc_maze_path, train_mc_maze
from ner.workflow.store import read_npz

RATE_HZ = 1000.0
TRIAL_S = 1.5
ONSET_S = 0.6005  # half a sample off the 1 kHz grid
BIN_MS = 20.0
WINDOW = (-200.0, 600.0)
N_BINS = 40
TARGETS = {13: 23.0, 38: 168.5, 18: 326.6}  # condition id -> target angle (degrees), as in the paper's maze
REPEATS = 3  # trials per (condition, version)
ITERATIONS = 25
SMALL = {"ner": {"batch_size": 64}, "cebra3d": {"batch_size": 64}}
TRAIN = {"bin_ms": BIN_MS, "window": WINDOW, "device": "cpu", "verbose": False, "method_params": SMALL}
SELECTIONS = ("straight-curve_13", "straight-curve_13-38-18")


def write_maze(path):
    """Conditions 13, 38, 18 in versions 0 (straight reach) and 1, 2 (bending left, right), interleaved;
    40 units cosine-tuned to the hand velocity. Returns the trial table as (condition, version) rows."""
    rng = np.random.default_rng(1)
    plan = [(c, v) for _ in range(REPEATS) for v in range(3) for c in TARGETS]
    rng.shuffle(plan)
    times = np.arange(int(len(plan) * TRIAL_S * RATE_HZ)) / RATE_HZ
    velocity = np.zeros((len(times), 2))
    for trial, (condition, version) in enumerate(plan):
        since = times - (trial * TRIAL_S + ONSET_S)
        inside = (since >= 0) & (since < 0.4)
        phase = np.where(inside, since / 0.4, 0.0)
        forward = np.where(inside, 700.0 * np.sin(np.pi * phase) ** 2, 0.0)
        sideways = np.where(inside, (0, 400.0, -400.0)[version] * np.sin(2 * np.pi * phase), 0.0)
        angle = np.deg2rad(TARGETS[condition])
        velocity[:, 0] += forward * np.cos(angle) - sideways * np.sin(angle)
        velocity[:, 1] += forward * np.sin(angle) + sideways * np.cos(angle)

    nwb = pynwb.NWBFile(session_description="synthetic maze", identifier="mc_maze_test",
                        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    preferred = rng.uniform(0, 2 * np.pi, 40)
    rate = 12.0 + 0.04 * (velocity @ np.stack([np.cos(preferred), np.sin(preferred)]))
    spikes = rng.random(rate.shape) < np.clip(rate, 0, None) / RATE_HZ
    for unit in range(40):
        nwb.add_unit(spike_times=times[spikes[:, unit]] + 0.0002)
    for name, description in (("move_onset_time", "movement onset"), ("trial_type", "maze condition"),
                              ("trial_version", "maze version"), ("success", "rewarded")):
        nwb.add_trial_column(name, description)
    nwb.add_trial_column("target_pos", "target positions (mm)", index=True)
    for trial, (condition, version) in enumerate(plan):
        angle = np.deg2rad(TARGETS[condition])
        nwb.add_trial(start_time=trial * TRIAL_S, stop_time=(trial + 1) * TRIAL_S,
                      move_onset_time=trial * TRIAL_S + ONSET_S, trial_type=condition, trial_version=version,
                      success=True, target_pos=[100.0 * np.array([np.cos(angle), np.sin(angle)])])
    behavior = nwb.create_processing_module("behavior", "hand kinematics")
    behavior.add(pynwb.TimeSeries(name="hand_vel", data=velocity, unit="mm/s", rate=RATE_HZ, starting_time=0.0))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return np.array(plan)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mc_maze")
    nwb = folder / "maze.nwb"
    plan = write_maze(nwb)
    out = folder / "data_NER"
    summary = train_mc_maze(nwb, out, selections=SELECTIONS, iterations=ITERATIONS, **TRAIN)
    return nwb, out, plan, summary


def test_caches_hold_the_session_keys_and_per_bin_conditions(trained):
    nwb, out, plan, summary = trained
    assert sorted(summary["computed"]) == sorted(f"{m}/{s}" for m in ("ner", "cebra3d") for s in SELECTIONS)
    assert summary["skipped"] == []
    sha = hashlib.sha256(nwb.read_bytes()).hexdigest()
    for method in ("ner", "cebra3d"):
        for name in SELECTIONS:
            conditions = PAPER_SELECTIONS[name].conditions
            n_trials = int(np.isin(plan[:, 0], conditions).sum())
            n_train = n_trials * 4 // 5
            data = read_npz(mc_maze_path(out, method, name))
            assert {"train_embedding", "test_embedding", "train_labels", "test_labels", "trial_length",
                    "train_trial_ids", "test_trial_ids", "loss", "provenance", "train_condition",
                    "test_condition", "train_version", "test_version", "train_target_angle",
                    "test_target_angle"} <= set(data)
            assert int(data["trial_length"]) == N_BINS
            for split, trials in (("train", n_train), ("test", n_trials - n_train)):
                assert data[f"{split}_embedding"].shape == (trials * N_BINS, 3)
                assert data[f"{split}_embedding"].dtype == np.float32
                for key in ("labels", "trial_ids", "condition", "version", "target_angle"):
                    assert len(data[f"{split}_{key}"]) == trials * N_BINS
            # Recording order kept: the selection's trials of the plan, split 80/20.
            chosen = np.flatnonzero(np.isin(plan[:, 0], conditions))
            np.testing.assert_array_equal(data["train_trial_ids"][::N_BINS], chosen[:n_train])
            np.testing.assert_array_equal(data["test_condition"][::N_BINS], plan[chosen[n_train:], 0])
            np.testing.assert_array_equal(data["train_version"][::N_BINS], plan[chosen[:n_train], 1])
            expected_angle = [TARGETS[c] for c in plan[chosen[:n_train], 0]]
            np.testing.assert_allclose(data["train_target_angle"][::N_BINS], expected_angle, atol=0.01)
            assert np.all(data["train_labels"][:, 2] == 0)  # the original's third label column
            assert np.abs(data["train_labels"][:, :2]).max() > 300  # velocities in mm/s
            assert len(data["loss"]) == ITERATIONS and np.all(np.isfinite(data["loss"]))
            provenance = data["provenance"]
            assert provenance["method"] == method and provenance["iterations"] == ITERATIONS
            assert provenance["seed"] == 0 and provenance["nwb_sha256"] == sha
            assert provenance["selection"] == {"name": name, "conditions": list(conditions),
                                               "versions": None}
            assert provenance["parameters"]["batch_size"] == 64
            assert provenance["loading"]["bin_ms"] == BIN_MS and provenance["loading"]["angle_label"] == "zero"
            assert {"ner", "cebra", "torch"} <= set(provenance["versions"])


def test_rerun_skips_matching_caches_and_redoes_changed_ones(trained):
    nwb, out, _, _ = trained
    path = mc_maze_path(out, "ner", SELECTIONS[0])
    before = path.stat().st_mtime_ns
    again = train_mc_maze(nwb, out, selections=SELECTIONS, iterations=ITERATIONS, **TRAIN)
    assert again["computed"] == [] and len(again["skipped"]) == 4
    assert path.stat().st_mtime_ns == before
    changed = train_mc_maze(nwb, out, methods="ner", selections=SELECTIONS[:1], iterations=ITERATIONS,
                                    seed=1, **TRAIN)
    assert changed["computed"] == [f"ner/{SELECTIONS[0]}"]
    assert read_npz(path)["provenance"]["seed"] == 1
    train_mc_maze(nwb, out, methods="ner", selections=SELECTIONS[:1], iterations=ITERATIONS, **TRAIN)
    assert read_npz(path)["provenance"]["seed"] == 0


def test_clear_errors(trained, tmp_path, monkeypatch, capsys):
    nwb = trained[0]
    with pytest.raises(FileNotFoundError, match="dandi download DANDI:000128"):
        train_mc_maze(tmp_path / "absent.nwb", tmp_path)
    empty = Selection("nothing", (99,))
    with pytest.raises(ValueError, match=r"'nothing'.*matches no usable trial.*13, 18, 38"):
        train_mc_maze(nwb, tmp_path, selections=["straight-curve_13", empty], **TRAIN)
    assert not (tmp_path / "mc_maze").exists()  # checked before any training
    with pytest.raises(ValueError, match="unknown selection 'straight_99'"):
        train_mc_maze(nwb, tmp_path, selections=["straight_99"], **TRAIN)
    # MC_Maze runs always train a set number of iterations: a method without them is refused.
    with pytest.raises(ValueError, match="'pca' does not train in iterations"):
        train_mc_maze(nwb, tmp_path, methods=["pca"], selections=SELECTIONS[:1], **TRAIN)
    assert not (tmp_path / "mc_maze").exists()
    assert parse_selection("mine=13,38/0") == Selection("mine", (13, 38), (0,))
    with pytest.raises(ValueError, match="NAME=CONDITIONS"):
        parse_selection("mine=13;38")

    assert main(["mc-maze", "--nwb", str(tmp_path / "absent.nwb"), "--out", str(tmp_path)]) == 2
    assert "dandi download" in capsys.readouterr().err
    assert main(["mc-maze", "--nwb", str(nwb), "--out", str(tmp_path), "--selections", "none=99"]) == 2
    assert "matches no usable trial" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pynwb", None)
    assert main(["mc-maze", "--nwb", str(nwb), "--out", str(tmp_path)]) == 2
    assert 'pip install "neural-embeddings-rank[nwb]"' in capsys.readouterr().err


def test_loader_reads_our_caches(trained):
    out = trained[1]
    runs = load_runs("ner", root=out)
    assert runs.source == OURS and list(runs.runs) == list(SELECTIONS)
    run = runs.runs["straight-curve_13-38-18"]
    assert run.trial_length == N_BINS and run.bin_ms == BIN_MS
    assert set(np.unique(run.condition["train"])) == set(TARGETS)
    scores = decode_run(run)
    assert scores["true_position"].shape == run.velocity["test"].shape
    assert -5 < scores["velocity_r2"] <= 1 and -5 < scores["position_r2"] <= 1
    nowhere = load_runs("ner", root=out.parent / "nowhere")
    assert not nowhere and nowhere.runs == {} and nowhere.source is None


def _figures(folder):
    return sorted(path.name for path in folder.glob("*")) if folder.exists() else []


def _point(monkeypatch, tmp_path, cache=None, reference=None):
    """Figures, caches and the data directory (where `ner fetch --paper-results` puts the paper's stored
    results) in tmp_path, and no NER_REFERENCE_DIR, so that no result of this machine is found by accident."""
    figures = tmp_path / "figures"
    monkeypatch.setenv("NER_CACHE_DIR", str(cache or tmp_path / "no_cache"))
    monkeypatch.setenv("NER_FIGURES_DIR", str(figures))
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)
    if reference:
        monkeypatch.setenv(REFERENCE_ENV, str(reference))
    else:
        monkeypatch.delenv(REFERENCE_ENV, raising=False)
    return figures


EXPECTED = ["fig08_mc_maze.pdf", "fig08_mc_maze.png", "fig11_cebra_mc_maze.pdf", "fig11_cebra_mc_maze.png"]


def test_notebooks_draw_our_caches(trained, tmp_path, monkeypatch):
    from ner.viz.notebooks import run_notebooks

    figures = _point(monkeypatch, tmp_path, cache=trained[1])
    assert sorted(run_notebooks(["08", "11"], progress=False)) == ["08_mc_maze_straight_vs_curved.ipynb",
                                                                   "11_cebra_mc_maze.ipynb"]
    assert _figures(figures) == EXPECTED
    assert all((figures / name).stat().st_size > 20_000 for name in EXPECTED)


def test_notebooks_without_results_say_how_to_make_them(tmp_path, monkeypatch):
    from ner.viz.notebooks import run_notebooks

    figures = _point(monkeypatch, tmp_path)
    run_notebooks(["08", "11"], progress=False)
    assert _figures(figures) == []
    for name in ("08_mc_maze_straight_vs_curved.ipynb", "11_cebra_mc_maze.ipynb"):
        printed = _printed(name)
        assert f"\n    {FETCH_COMMAND}\n" in printed and FETCH_COMMAND == "ner fetch --paper-results"
        assert "dandi download DANDI:000128" in printed and "ner mc-maze --nwb" in printed
        assert HOW_TO in printed


def _printed(name):
    """What the notebook ``name`` prints, run in this process's environment."""
    import nbformat
    from nbclient import NotebookClient

    from ner.viz.notebooks import notebooks_dir

    notebook = nbformat.read(notebooks_dir() / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(notebooks_dir())}}).execute()
    return "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.fixture
def upstream_fig8():
    value = os.environ.get("NER_REFERENCE_DIR")
    folder = Path(value) / "upstream_data_NER" / "Fig8" if value else None
    if folder is None or not folder.is_dir():
        pytest.skip("NER_REFERENCE_DIR is not set (or holds no upstream_data_NER/Fig8)")
    return folder


def test_loader_reads_the_original_results(upstream_fig8, monkeypatch):
    monkeypatch.setenv(REFERENCE_ENV, str(upstream_fig8))
    ner_runs, cebra_runs = load_runs("ner"), load_runs("cebra3d")
    assert ner_runs.source == ORIGINAL == cebra_runs.source
    assert len(ner_runs.runs) == 8 and set(cebra_runs.runs) == set(ner_runs.runs)
    run = ner_runs.runs["straight-curve_13-38-18"]
    assert run.trial_length == 100 and run.n_trials("train") == 149 and run.n_trials("test") == 38
    # condition ids recovered from the single-condition files' target angles
    assert set(np.unique(run.condition["test"])) == {13, 38, 18}
    assert set(np.unique(ner_runs.runs["up-down_31-38"].condition["train"])) == {31, 38}
    scores = decode_run(run)
    assert 0.3 < scores["velocity_r2"] <= 1 and 0.3 < scores["position_r2"] <= 1


def test_the_reference_folder_is_read_without_the_maze_override(upstream_fig8, tmp_path, monkeypatch):
    _point(monkeypatch, tmp_path)
    monkeypatch.setenv("NER_REFERENCE_DIR", str(upstream_fig8.parent.parent))
    runs = load_runs("ner")
    assert runs.source == ORIGINAL and runs.folder == upstream_fig8 and len(runs.runs) == 8
    assert load_runs("ner", root=tmp_path / "no_cache").runs == {}  # an explicit cache folder: only caches


@pytest.mark.parametrize("relative", [False, True])
def test_notebooks_draw_the_original_results(upstream_fig8, tmp_path, monkeypatch, relative):
    from ner.viz.notebooks import run_notebooks

    # A folder named relative to where `ner figures` runs, not to notebooks/ where the kernels run.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Fig8").symlink_to(upstream_fig8)
    figures = _point(monkeypatch, tmp_path, reference="Fig8" if relative else upstream_fig8)
    run_notebooks(["08", "11"], progress=False)
    assert _figures(figures) == EXPECTED
    assert all((figures / name).stat().st_size > 20_000 for name in EXPECTED)


def test_original_file_names_without_colons_are_read(upstream_fig8, tmp_path):
    # Where ':' cannot be in a file name (Windows), `ner fetch` writes "Type_ ..."; the reader takes both.
    from ner.reference.maze import original_runs

    for ids in ("13", "18"):
        path = upstream_fig8 / f"Type: curve-straight=[{ids}]_parameters_5000itr_lr0.0001.npz"
        (tmp_path / path.name.replace("Type:", "Type_")).symlink_to(path)
    runs = original_runs(tmp_path, "ner")
    assert sorted(runs) == ["straight-curve_13", "straight-curve_18"]
    assert set(np.unique(runs["straight-curve_13"].condition["test"])) == {13}


def test_fetched_results_draw_the_figures_without_any_setting(upstream_fig8, tmp_path, monkeypatch):
    """`ner fetch --paper-results` (from a local mirror of the upstream tree) into the default folder;
    the notebooks then draw the original's latents, saying so, with no environment variable naming them."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from test_fetch import Mirror

    from ner.data.download import (
        PAPER_RESULTS_PREFIX,
        fetched_results_dir,
        missing_paper_results,
        paper_results_dir,
        paper_results_registry,
    )

    served = tmp_path / "mirror" / PAPER_RESULTS_PREFIX
    for relative in paper_results_registry():
        (served / relative).parent.mkdir(parents=True, exist_ok=True)
        (served / relative).symlink_to(upstream_fig8.parent / relative)
    figures = _point(monkeypatch, tmp_path)
    mirror = Mirror(tmp_path / "mirror")
    try:
        monkeypatch.setenv("NER_FETCH_URL", mirror.url)
        assert main(FETCH_COMMAND.split()[1:]) == 0
    finally:
        mirror.close()
    fetched = fetched_results_dir()
    assert fetched == tmp_path / "data" / "upstream_data_NER" and missing_paper_results(fetched) == []
    assert paper_results_dir() == fetched
    folder = fetched / "Fig8"

    runs = load_runs("ner")
    assert runs.source == ORIGINAL and runs.folder == folder and len(runs.runs) == 8
    assert load_runs("ner", root=tmp_path / "no_cache").runs == {}  # an explicit cache folder: only caches
    printed = _printed("08_mc_maze_straight_vs_curved.ipynb")
    assert "8 NER runs: the original authors' MC_Maze latents, decoded by us" in printed
    assert _figures(figures) == ["fig08_mc_maze.pdf", "fig08_mc_maze.png"]
    printed = _printed("11_cebra_mc_maze.ipynb")
    assert "8 CEBRA runs: the original authors' MC_Maze latents, decoded by us" in printed
    assert _figures(figures) == EXPECTED

    # One file short (an interrupted fetch): not drawn, the notebook says what to run.
    next(folder.glob("Supp_Cebra/*.npz")).unlink()
    assert not load_runs("ner")
    assert FETCH_COMMAND in _printed("11_cebra_mc_maze.ipynb")


def test_the_title_says_whose_latents(upstream_fig8, trained, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv(REFERENCE_ENV, str(upstream_fig8))
    original = load_runs("ner")
    original = dataclasses.replace(original, runs={"straight-curve_13": original.runs["straight-curve_13"]})
    fig, _ = draw_figure(original, "Fig 8")
    assert fig._suptitle.get_text().startswith("Fig 8: the original authors' MC_Maze latents, decoded by us\n")
    plt.close(fig)
    monkeypatch.delenv(REFERENCE_ENV)
    fig, _ = draw_figure(load_runs("ner", root=trained[1]), "Fig 8")
    assert fig._suptitle.get_text().startswith("Fig 8: this project's MC_Maze latents (ner mc-maze), decoded by us")
    plt.close(fig)
