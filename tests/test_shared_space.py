"""One latent space for several sessions, on tiny synthetic sessions: units of a group, caches that
resume, no-alignment matrices, calibration of a held-out unit, and no test trial in any training."""

import numpy as np
import pytest
from test_run import reaching_session

import ner.model
from ner.data import write_session_mat
from ner.workflow import shared_space
from ner.workflow.store import read_npz

FAST = dict(iterations=5, batch_size=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sessions")
    for seed, name in enumerate(["Chewie_20990101", "Chewie_20990102", "Chewie_20990103", "Han_20990101"]):
        area = "S1" if name.startswith("Han") else "M1"
        write_session_mat(reaching_session(name, seed, area=area), folder / f"{name}_neural_con_dis_index.mat")
    return folder


def test_groups_select_their_units_and_refuse_what_they_cannot_hold(data):
    assert [(s, a) for s, a, _ in shared_space.group_units("Chewie_M1", data)] == [
        ("Chewie_20990101", "M1"), ("Chewie_20990102", "M1"), ("Chewie_20990103", "M1")]
    with pytest.raises(ValueError, match="unknown group 'Chewie'"):
        shared_space.group_units("Chewie", data)
    with pytest.raises(ValueError, match="group Han_S1 needs two or more units; found 1"):
        shared_space.group_units("Han_S1", data)
    with pytest.raises(ValueError, match="unknown shared-space model 'pca'"):
        shared_space.fit_shared_space("Chewie_M1", "pca", data_dir=data, out_dir=data)


def test_caches_resume_and_the_table_decodes_with_no_alignment(data, tmp_path, monkeypatch):
    checkpoints, fit = [], ner.model.NER.fit

    def spy(self, *args, checkpoint=None, **kwargs):
        checkpoints.append(checkpoint)
        return fit(self, *args, checkpoint=checkpoint, **kwargs)
    monkeypatch.setattr(ner.model.NER, "fit", spy)
    paths = [shared_space.fit_shared_space("Chewie_M1", model, data_dir=data, out_dir=tmp_path, **FAST)
             for model in shared_space.MODELS]
    # The NER fit checkpointed beside its cache, which replaced the checkpoint.
    assert checkpoints == [paths[0].with_name("ner_across_5it_seed0.checkpoint.pt")]
    assert sorted(path.name for path in paths[0].parent.iterdir()) == sorted(path.name for path in paths)
    left = checkpoints[0]
    left.write_bytes(b"as a kill after the cache's write leaves it")
    again = shared_space.fit_shared_space("Chewie_M1", data_dir=data, out_dir=tmp_path, **FAST)
    assert again == paths[0] and again.stat().st_mtime_ns == paths[0].stat().st_mtime_ns  # kept
    assert not left.exists()
    other = shared_space.fit_shared_space("Chewie_M1", data_dir=data, out_dir=tmp_path, **{**FAST, "seed": 1})
    first, second = read_npz(paths[0]), read_npz(other)
    assert first["provenance"]["units"] == ["Chewie_20990101_M1", "Chewie_20990102_M1", "Chewie_20990103_M1"]
    assert not np.allclose(first["test_embedding_0"], second["test_embedding_0"])  # the seed counts
    assert first["train_embedding_2"].shape == (32 * 10, 3)  # 80 % of 40 trials of 10 bins

    assert [p.name for p in (*paths, other)] == ["ner_across_5it_seed0.npz", "cebra_5it_seed0.npz",
                                                 "ner_across_5it_seed1.npz"]
    table = read_npz(shared_space.shared_space_table("Chewie_M1", out_dir=tmp_path))  # every cache, by name
    assert table["variants"].tolist() == ["cebra_5it_seed0", "ner_across_5it_seed0", "ner_across_5it_seed1"]
    assert table["models"].tolist() == ["cebra", "ner", "ner"] and table["seeds"].tolist() == [0, 0, 1]
    assert table["position_r2"].shape == (3, 3, 3) and np.isfinite(table["position_r2"]).all()
    assert table["provenance"]["protocol"] == "no alignment"


def test_validation_caches_hold_only_training_trials_and_are_named_by_their_settings(tmp_path, capsys):
    data = tmp_path / "sessions"
    data.mkdir()
    for seed, name in enumerate(["Chewie_20990101", "Chewie_20990102"]):  # 50 trials: 8 directions validate
        write_session_mat(reaching_session(name, seed, n_trials=50), data / f"{name}_neural_con_dis_index.mat")
    path = shared_space.fit_shared_space("Chewie_M1", data_dir=data, out_dir=tmp_path, validation=True,
                                         settings={"temperature": 0.5, "num_hidden_units": 8}, **FAST)
    assert path == tmp_path / "shared_space" / "Chewie_M1" / "validation" / (
        "ner_across_num_hidden_units8_temperature0.5_5it_seed0.npz")
    cache = read_npz(path)
    assert cache["provenance"]["parameters"]["temperature"] == 0.5 and cache["provenance"]["split"] == "validation"
    session = ner.data.load_session(shared_space.group_units("Chewie_M1", data)[0][2], "M1")
    # 40 training trials of 10 bins: the first 32 fit, the last 8 are scored; no test row anywhere.
    assert cache["train_labels_0"].shape[0] == 32 * 10 and cache["test_labels_0"].shape[0] == 8 * 10
    np.testing.assert_array_equal(cache["test_labels_0"], session.train.labels[32 * 10:])
    table = read_npz(shared_space.shared_space_table("Chewie_M1", out_dir=tmp_path, validation=True))
    assert table["variants"].tolist() == [path.stem] and table["provenance"]["scored"] == "validation trials"
    assert not (tmp_path / "results" / "shared_space_Chewie_M1.npz").exists()  # the test-trial table is apart

    from ner.cli import main

    assert main(["shared-space", "--models", "cebra", "--validation", "--data-dir", str(data), "--out", str(tmp_path),
                 "--iterations", "3", "--batch-size", "32", "--quiet"]) == 0
    table = read_npz(tmp_path / "results" / "shared_space_Chewie_M1_validation.npz")
    assert table["variants"].tolist() == ["cebra_3it_seed0", path.stem]
    assert f"(best on validation: {shared_space.best_variant(table)})" in capsys.readouterr().out


def test_best_variant_sums_position_and_velocity_off_the_diagonal_over_seeds():
    def matrix(off, diagonal=1.0):
        return np.where(np.eye(3, dtype=bool), diagonal, off)

    table = {"variants": np.array(["a_5it_seed0", "a_5it_seed1", "a_5it_seed2", "b_5it_seed0", "c_5it_seed0"]),
             "position_r2": np.stack([matrix(0.9), matrix(0.9), matrix(0.9), matrix(0.8, diagonal=5.0), matrix(0.95)]),
             "velocity_r2": np.stack([matrix(0.9), matrix(-0.1), matrix(0.9), matrix(0.7), matrix(0.6)])}
    # a: the mean over its seeds of 1.8, 0.8 (a failed seed) and 1.8 = 1.47 (their median, 1.8, would
    # win); b: 1.5 (its diagonal does not count); c: 1.55. By velocity alone: a 0.57, b 0.7, c 0.6.
    assert shared_space.best_variant(table) == "c_5it"
    assert shared_space.best_variant(table, scores=("velocity_r2",)) == "b_5it"


def test_calibration_fits_only_on_training_trials_of_the_held_out_unit(data, tmp_path, monkeypatch):
    seen = []
    fit, add = ner.model.NER.fit, ner.model.NER.add_session

    def spy_fit(self, X, y, **kwargs):
        seen.extend(X if isinstance(X, list) else [X])
        return fit(self, X, y, **kwargs)

    def spy_add(self, X, y, **kwargs):
        seen.append(X)
        return add(self, X, y, **kwargs)

    monkeypatch.setattr(ner.model.NER, "fit", spy_fit)
    monkeypatch.setattr(ner.model.NER, "add_session", spy_add)
    path = shared_space.calibrate("Chewie_M1", "Chewie_20990103_M1", data_dir=data, out_dir=tmp_path,
                                  trials=(2, None), adapt_iterations=(3, 2), **FAST)
    result = read_npz(path)
    assert result["trials"].tolist() == [2, 32] and result["iterations"].tolist() == [2, 3]
    assert result["adapted_position_r2"].shape == result["scratch_position_r2"].shape == (2, 2)
    assert np.isfinite(result["adapted_velocity_r2"]).all()
    # Two trials hold two directions: from scratch, no decoder of its own can be fitted.
    assert np.isnan(result["scratch_velocity_r2"][0]).all() and np.isfinite(result["scratch_velocity_r2"][1]).all()

    test_rows = set()
    for _, area, file in shared_space.group_units("Chewie_M1", data):
        test_rows |= {row.tobytes() for row in ner.data.load_session(file, area).test.neural}
    assert seen and not any(row.tobytes() in test_rows for X in seen for row in np.asarray(X))
    with pytest.raises(ValueError, match="Han_20990101_S1 is not a unit of Chewie_M1"):
        shared_space.calibrate("Chewie_M1", "Han_20990101_S1", data_dir=data, out_dir=tmp_path, **FAST)


def test_command_line_trains_tabulates_and_calibrates(data, tmp_path, capsys):
    from ner.cli import main

    common = ["--data-dir", str(data), "--out", str(tmp_path), "--iterations", "3", "--batch-size", "32", "--quiet"]
    assert main(["shared-space", "--models", "ner", "--calibrate", "Chewie_20990103_M1", "--adapt-iterations", "2",
                 *common]) == 0
    assert (tmp_path / "shared_space" / "Chewie_M1" / "ner_across_3it_seed0.npz").exists()
    calibration = read_npz(tmp_path / "results" / "calibration_Chewie_M1_Chewie_20990103_M1_seed0.npz")
    assert calibration["provenance"]["iterations"] == 3 and calibration["iterations"].tolist() == [2]
    assert main(["shared-space", "--models", "ner", "--set", "ner.temperature=0.5", "--calibrate",
                 "Chewie_20990103_M1", "--adapt-iterations", "2", *common]) == 0
    assert read_npz(tmp_path / "shared_space" / "Chewie_M1" / "ner_across_temperature0.5_3it_seed0.npz"
                    )["provenance"]["parameters"]["temperature"] == 0.5
    # Calibrated with other settings: a file beside the first, which is kept.
    other = read_npz(tmp_path / "results" / "calibration_Chewie_M1_Chewie_20990103_M1_temperature0.5_seed0.npz")
    assert other["provenance"]["settings"] == {"temperature": 0.5}
    assert "settings" not in read_npz(tmp_path / "results" / "calibration_Chewie_M1_Chewie_20990103_M1_seed0.npz"
                                      )["provenance"]
    assert main(["shared-space", "--groups", "Chewie_S1", *common]) == 2
    assert "unknown group 'Chewie_S1'" in capsys.readouterr().err


def test_reproduce_trains_the_shared_spaces_of_its_methods_and_resumes(data, tmp_path):
    from ner.workflow.run import run_pipeline

    chewie = ["Chewie_20990101", "Chewie_20990102", "Chewie_20990103"]
    settings = dict(sessions=chewie, iterations=3, device="cpu", progress=False, groups=["Chewie_M1"],
                    method_params={"ner": {"batch_size": 32}})
    summary = run_pipeline(data, tmp_path, methods=["ner", "cebra16d"], **settings)
    folder = tmp_path / "shared_space" / "Chewie_M1"
    assert sorted(p.name for p in folder.iterdir()) == ["ner_across_3it_seed0.npz"]  # none of cebra16d
    table = read_npz(summary["shared_spaces"]["Chewie_M1"])
    assert table["variants"].tolist() == ["ner_across_3it_seed0"] and table["position_r2"].shape == (1, 3, 3)
    kept = (folder / "ner_across_3it_seed0.npz").stat().st_mtime_ns
    run_pipeline(data, tmp_path, methods=["ner", "cebra3d"], **{**settings, "method_params": None})
    assert sorted(p.name for p in folder.iterdir()) == ["cebra_3it_seed0.npz", "ner_across_3it_seed0.npz"]
    assert (folder / "ner_across_3it_seed0.npz").stat().st_mtime_ns == kept
    with pytest.raises(ValueError, match="unknown group.s. Chewie_S1"):
        run_pipeline(data, tmp_path, methods=["ner"], **{**settings, "groups": ["Chewie_S1"]})
    with pytest.raises(ValueError, match="neither is among methods"):
        run_pipeline(data, tmp_path, methods=["cebra16d"], **{**settings, "method_params": None})
