"""The cache pipeline on tiny synthetic sessions: contents, provenance, resuming, errors."""

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import ner
import ner.methods
from ner.cli import main
from ner.data import load_session, synthetic_session, write_session_mat
from ner.data.sessions import Session
from ner.methods import Method, construct
from ner.workflow.run import BACKENDS, run_pipeline
from ner.workflow.store import (
    Unit,
    cache_path,
    cross_session_path,
    publish,
    read_npz,
    table_path,
)

TINY = {"batch_size": 64}
PAPER_METHODS = ("ner", "cebra3d", "cebra16d")
CACHE_KEYS = {"train_embedding", "test_embedding", "train_labels", "test_labels", "trial_length",
              "train_trial_ids", "test_trial_ids", "provenance"}


def reaching_session(name, seed, area="M1", n_trials=40, trial_length=10):
    """A small synthetic session whose trials cycle through the 8 directions, so that the last 20 %
    (the test split) holds all 8, as the direction decoder needs."""
    session = synthetic_session(n_trials=n_trials, n_neurons=20, trial_length=trial_length, seed=seed)
    direction = session.angle[::trial_length]
    occurrence = [np.sum(direction[:i] == d) for i, d in enumerate(direction)]
    trials = np.lexsort((direction, occurrence))
    rows = (trials[:, None] * trial_length + np.arange(trial_length)).ravel()
    return Session(name, area, session.neural[rows], session.labels[rows], trial_length)


def write_sessions(folder, n, start_seed=0):
    folder.mkdir(exist_ok=True)
    for seed in range(start_seed, start_seed + n):
        write_session_mat(reaching_session(f"syn{seed}", seed), folder / f"syn{seed}_neural_con_dis_index.mat")
    return folder


def tiny(methods=("ner",)):
    return {method: TINY for method in methods}


def mtimes(out):
    return {path: path.stat().st_mtime_ns for path in sorted(out.rglob("*.npz"))}


def run(data, out, methods=("ner",), **kwargs):
    settings = {"methods": methods, "iterations": 20, "device": "cpu", "progress": False,
                "method_params": tiny(methods)}
    settings.update(kwargs)
    return run_pipeline(data, out, **settings)


# A method of the tests' own: the paper's PCA baseline under another name, registered per test.
PCA_PLAIN = Method("pca_plain", "PCA (plain)", functools.partial(construct, "ner.methods.pca:TrialAveragePCA"),
                   {"trial_length": "trial_length"})


def register(monkeypatch, *names):
    for name in names or ("pca_plain",):
        monkeypatch.setitem(ner.methods.METHODS, name, dataclasses.replace(PCA_PLAIN, name=name))


def test_caches_and_tables_hold_everything_with_provenance(tmp_path):
    data, out = write_sessions(tmp_path / "data", 2), tmp_path / "out"
    summary = run(data, out, methods=PAPER_METHODS)
    assert sorted(summary["computed"]) == sorted(f"{m}/seed0/syn{s}_M1" for m in PAPER_METHODS for s in (0, 1))
    assert summary["skipped"] == [] and summary["failed"] == {}
    # Synthetic sessions are not the named real units the figure data is made from: none is made.
    assert summary["figure_data"]["computed"] == []

    session = load_session(data / "syn0_neural_con_dis_index.mat", "M1")
    for method, dims in zip(PAPER_METHODS, (3, 3, 16)):
        cache = read_npz(cache_path(out, Unit("syn0", "M1", method)))
        assert set(cache) == CACHE_KEYS | {"loss"}
        assert cache["train_embedding"].shape == (32 * 10, dims) and cache["test_embedding"].shape == (8 * 10, dims)
        for key in ("train_embedding", "test_embedding", "train_labels", "test_labels", "loss"):
            assert cache[key].dtype == np.float32
        assert cache["loss"].shape == (20,) and np.isfinite(cache["loss"]).all()
        np.testing.assert_array_equal(cache["test_labels"], session.test.labels)
        np.testing.assert_array_equal(cache["train_trial_ids"], session.train.trial_ids)
        assert int(cache["trial_length"]) == 10
        provenance = cache["provenance"]
        assert provenance["method"] == method and provenance["iterations"] == 20 and provenance["seed"] == 0
        assert provenance["session_sha256"] == session.sha256
        assert provenance["parameters"]["batch_size"] == 64
        assert provenance["parameters"]["output_dimension"] == dims
        if method == "ner":  # one label layout, not the former n_label_columns / search / circular columns
            assert provenance["parameters"]["label_layout"] == repr(ner.PAPER_LAYOUT)
            assert not {"n_label_columns", "search_columns", "circular_columns"} & set(provenance["parameters"])
        assert provenance["sampler"] == "kd-tree exact"  # NER and the seeded CEBRA baselines alike
        assert set(provenance["versions"]) == {"ner", "cebra", "torch", "numpy", "sklearn"}
        assert provenance["device"] == "cpu" and provenance["wall_time_s"] > 0
        assert provenance["created_utc"].endswith("+00:00")

    table = read_npz(table_path(out, "M1"))
    assert table["methods"].tolist() == sorted(PAPER_METHODS) and table["sessions"].tolist() == ["syn0", "syn1"]
    for split in ("train", "test"):
        for metric in ("velocity_r2", "position_r2", "peak_accuracy"):
            assert table[f"{split}_{metric}"].shape == (3, 2) and np.isfinite(table[f"{split}_{metric}"]).all()
        assert table[f"{split}_accuracy_per_bin"].shape == (3, 2, 10)
    assert table["provenance"]["protocol"] == "corrected" and len(table["provenance"]["inputs"]) == 6
    assert list(out.rglob("*.part")) == []


def test_rerun_skips_and_a_changed_request_or_force_recomputes(tmp_path):
    data, out = write_sessions(tmp_path / "data", 2), tmp_path / "out"
    run(data, out)
    first = mtimes(out)

    again = run(data, out)
    assert again["computed"] == [] and sorted(again["skipped"]) == ["ner/seed0/syn0_M1", "ner/seed0/syn1_M1"]
    assert again["tables"]["computed"] == [] and mtimes(out) == first

    longer = run(data, out, iterations=25, sessions=["syn1"])
    assert longer["computed"] == ["ner/seed0/syn1_M1"]
    assert read_npz(cache_path(out, Unit("syn1", "M1", "ner")))["provenance"]["iterations"] == 25
    # An input changed, so its area's table and its subject's matrices are redone; syn0's are kept.
    assert sorted(longer["tables"]["computed"]) == [str(cross_session_path(out, "syn1")), str(table_path(out, "M1"))]
    after = mtimes(out)
    assert after[cache_path(out, Unit("syn0", "M1", "ner"))] == first[cache_path(out, Unit("syn0", "M1", "ner"))]

    forced = run(data, out, iterations=25, sessions=["syn1"], force=True)
    assert forced["computed"] == ["ner/seed0/syn1_M1"] and forced["skipped"] == []
    assert mtimes(out)[cache_path(out, Unit("syn1", "M1", "ner"))] > after[cache_path(out, Unit("syn1", "M1", "ner"))]


def test_a_cache_made_before_a_parameter_existed_matches_its_old_behaviour_only(tmp_path):
    data, out = write_sessions(tmp_path / "data", 1), tmp_path / "out"
    run(data, out)
    path = cache_path(out, Unit("syn0", "M1", "ner"))
    cache = read_npz(path)
    provenance = cache.pop("provenance")
    del provenance["parameters"]["multisession_positives"]  # as a cache of a version without it
    publish(path, cache, provenance)
    assert run(data, out)["skipped"] == ["ner/seed0/syn0_M1"]  # at the value that computes what came before
    within = run(data, out, method_params={"ner": {**TINY, "multisession_positives": "within"}})
    assert within["computed"] == ["ner/seed0/syn0_M1"]


def test_each_seed_has_its_cache_and_tables_give_every_seed_and_the_median(tmp_path, monkeypatch):
    data, out = write_sessions(tmp_path / "data", 2), tmp_path / "out"
    register(monkeypatch)
    summary = run(data, out, methods=("ner", "pca_plain"), seeds=[0, 1], iterations=None,
                  method_params={"ner": {**TINY, "max_iterations": 20}})
    # PCA has no randomness: fitted once, under the first seed; NER once per seed, seed 0 first.
    assert summary["computed"] == ["ner/seed0/syn0_M1", "ner/seed0/syn1_M1", "pca_plain/seed0/syn0_M1",
                                   "pca_plain/seed0/syn1_M1", "ner/seed1/syn0_M1", "ner/seed1/syn1_M1"]
    first, second = (read_npz(cache_path(out, Unit("syn0", "M1", "ner", seed))) for seed in (0, 1))
    assert (first["provenance"]["seed"], second["provenance"]["seed"]) == (0, 1)
    assert not np.allclose(first["train_embedding"], second["train_embedding"])  # the seed reaches the fit

    table = read_npz(table_path(out, "M1"))
    assert table["seeds"].tolist() == [0, 1] and table["methods"].tolist() == ["ner", "pca_plain"]
    per_seed, median = table["test_position_r2_per_seed"], table["test_position_r2"]
    assert per_seed.shape == (2, 2, 2) and np.isfinite(per_seed[0]).all()
    assert np.isnan(per_seed[1, :, 1]).all()  # PCA has no seed 1
    np.testing.assert_allclose(median[0], per_seed[0].mean(axis=1))  # the median of two is their mean
    np.testing.assert_array_equal(median[1], per_seed[1, :, 0])
    assert table["test_accuracy_per_bin_per_seed"].shape == (2, 2, 2, 10)

    cross = read_npz(cross_session_path(out, "syn0"))
    assert cross["seeds"].tolist() == [0, 1] and cross["linear_position_r2_per_seed"].shape == (2, 2, 1, 1)
    np.testing.assert_allclose(cross["linear_position_r2"][0], cross["linear_position_r2_per_seed"][0].mean(0))
    with pytest.raises(ValueError, match="seeds must be one or more non-negative integers"):
        run(data, out, seeds=[])


def kill_run_once(data, out, iterations, written, what):
    """Run the NER pipeline in a child process and SIGKILL it as soon as ``written()`` is true."""
    script = (f"from ner.workflow.run import run_pipeline\n"
              f"run_pipeline({str(data)!r}, {str(out)!r}, methods=['ner'], iterations={iterations}, device='cpu',"
              f" progress=False, method_params={tiny()!r})\n")
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not written():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, f"the pipeline wrote no {what} within 120 s"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()


def test_a_killed_run_resumes_without_losing_or_redoing_work(tmp_path):
    data, out = write_sessions(tmp_path / "data", 3), tmp_path / "out"
    caches = out / "embeddings" / "ner" / "seed0"
    # 150 steps make a unit take long enough that the kill lands before the run is over.
    kill_run_once(data, out, 150, lambda: list(caches.glob("*.npz")), "cache")
    finished = mtimes(out)
    assert 1 <= len(finished) < 3, "the kill should land mid-run"
    assert not table_path(out, "M1").exists()

    summary = run(data, out, iterations=150)
    done = {f"ner/seed0/{path.stem}" for path in finished}
    assert set(summary["skipped"]) == done
    assert set(summary["computed"]) == {f"ner/seed0/syn{s}_M1" for s in range(3)} - done
    assert all(mtimes(out)[path] == stamp for path, stamp in finished.items())
    assert len(list(caches.glob("*.npz"))) == 3 and table_path(out, "M1").exists()
    assert list(out.rglob("*.part")) == []


def test_a_fit_killed_midway_resumes_from_its_checkpoint_to_the_same_cache(tmp_path):
    data = write_sessions(tmp_path / "data", 1)
    out, plain = tmp_path / "out", tmp_path / "plain"
    checkpoint = out / "embeddings" / "ner" / "seed0" / "syn0_M1.checkpoint.pt"
    # An NER fit checkpoints every 500 steps beside its cache: kill the run once the first is written.
    kill_run_once(data, out, 1200, checkpoint.exists, "checkpoint")
    assert not cache_path(out, Unit("syn0", "M1", "ner", 0)).exists()
    left = checkpoint.read_bytes()

    assert run(data, out, iterations=1200)["computed"] == ["ner/seed0/syn0_M1"]
    run(data, plain, iterations=1200)
    resumed, uninterrupted = (read_npz(cache_path(folder, Unit("syn0", "M1", "ner", 0))) for folder in (out, plain))
    assert resumed["provenance"]["resumed_from_step"] in (500, 1000)
    assert "resumed_from_step" not in uninterrupted["provenance"]
    for key in ("train_embedding", "test_embedding", "loss"):
        np.testing.assert_array_equal(resumed[key], uninterrupted[key])
    assert not checkpoint.exists()  # removed once the cache is written

    checkpoint.write_bytes(left)  # --force starts afresh: steps taken by older code are not reused
    run(data, out, iterations=1200, force=True)
    assert "resumed_from_step" not in read_npz(cache_path(out, Unit("syn0", "M1", "ner", 0)))["provenance"]
    assert not checkpoint.exists()

    checkpoint.write_bytes(left)  # as a kill between the cache's write and the checkpoint's removal leaves it
    assert run(data, out, iterations=1200)["skipped"] == ["ner/seed0/syn0_M1"]
    assert not checkpoint.exists()


def test_temporary_files_of_dead_writers_are_removed_and_never_read(tmp_path):
    data, out = write_sessions(tmp_path / "data", 1), tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = out / "embeddings" / "ner" / "seed0"
    folder.mkdir(parents=True)
    stale = folder / f".syn0_M1.npz.{dead.pid}.0123abcd.part"
    live = folder / f".syn0_M1.npz.{os.getpid()}.0123abcd.part"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    summary = run(data, out)
    assert summary["computed"] == ["ner/seed0/syn0_M1"] and summary["stale_removed"] == [str(stale)]
    assert not stale.exists() and live.exists()


def test_sessions_and_areas_select_units(tmp_path):
    data = write_sessions(tmp_path / "data", 2)
    path = data / "syn0_neural_con_dis_index.mat"
    contents = scipy.io.loadmat(path)
    contents["neural_PMd"] = contents["neural_M1"][:, :12]
    scipy.io.savemat(path, {key: value for key, value in contents.items() if not key.startswith("__")})

    summary = run(data, tmp_path / "out", areas=["PMd"])
    assert summary["computed"] == ["ner/seed0/syn0_PMd"]
    assert read_npz(cache_path(tmp_path / "out", Unit("syn0", "PMd", "ner")))["train_embedding"].shape == (320, 3)
    assert sorted(p.name for p in (tmp_path / "out" / "results").iterdir()) == [
        "cross_session_syn0.npz", "decoding_PMd.npz"]


def test_registered_methods_run_and_a_failing_unit_does_not_stop_the_others(tmp_path, monkeypatch):
    data, out = write_sessions(tmp_path / "data", 2), tmp_path / "out"
    register(monkeypatch)
    # Iterations are refused for a method without them, before any work (they used to be dropped silently).
    with pytest.raises(ValueError, match="'pca_plain' does not train in iterations"):
        run_pipeline(data, out, methods=["pca_plain", "ner"], iterations=20, device="cpu", progress=False)
    assert not out.exists()
    # NER's training length as a parameter of its own instead. 320 training bins are fewer than NER's
    # batch of 512: its units fail, the PCA units of the same run still finish.
    summary = run_pipeline(data, out, methods=["pca_plain", "ner"], device="cpu", progress=False,
                           method_params={"ner": {"max_iterations": 20}})
    assert sorted(summary["computed"]) == ["pca_plain/seed0/syn0_M1", "pca_plain/seed0/syn1_M1"]
    assert set(summary["failed"]) == {"ner/seed0/syn0_M1", "ner/seed0/syn1_M1"}
    assert "batch_size" in summary["failed"]["ner/seed0/syn0_M1"]
    assert read_npz(table_path(out, "M1"))["methods"].tolist() == ["pca_plain"]
    cache = read_npz(cache_path(out, Unit("syn0", "M1", "pca_plain")))
    assert "loss" not in cache and cache["provenance"]["sampler"] is None
    assert cache["provenance"]["iterations"] is None and cache["provenance"]["parameters"]["n_components"] == 3
    assert cache["provenance"]["parameters"]["trial_length"] == 10  # the session's, through the method's settings


def test_parallel_workers_write_the_same_caches(tmp_path, monkeypatch):
    data = write_sessions(tmp_path / "data", 2)
    register(monkeypatch)
    serial = run_pipeline(data, tmp_path / "serial", methods=["pca_plain"], progress=False)
    parallel = run_pipeline(data, tmp_path / "parallel", methods=["pca_plain"], progress=False, n_jobs=2)
    assert parallel["failed"] == {}
    assert sorted(parallel["computed"]) == sorted(serial["computed"]) == ["pca_plain/seed0/syn0_M1", "pca_plain/seed0/syn1_M1"]
    unit = Unit("syn1", "M1", "pca_plain")
    np.testing.assert_allclose(read_npz(cache_path(tmp_path / "parallel", unit))["test_embedding"],
                               read_npz(cache_path(tmp_path / "serial", unit))["test_embedding"], rtol=1e-5)


def test_bad_requests_fail_early_with_clear_messages(tmp_path):
    data = write_sessions(tmp_path / "data", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no session files .*ner fetch"):
        run(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown method 'nerr'; available: ner, ner_own_positives, "
                                         "ner_search_all, cebra3d, cebra16d, pca, dpca, umap, umap_label, pivae"):
        run_pipeline(data, tmp_path / "out", methods=["nerr"], progress=False)
    with pytest.raises(ValueError, match="methods is empty"):
        run_pipeline(data, tmp_path / "out", methods=[], progress=False)
    with pytest.raises(ValueError, match="session.*syn7.*sessions there: syn0"):
        run(data, tmp_path / "out", sessions=["syn7"])
    with pytest.raises(ValueError, match="sessions is empty"):
        run(data, tmp_path / "out", sessions=[])
    with pytest.raises(ValueError, match="area.*S1.*areas recorded: M1"):
        run(data, tmp_path / "out", areas=["S1"])
    with pytest.raises(ValueError, match="method_params names cebra3d"):
        run_pipeline(data, tmp_path / "out", methods=["ner"], method_params=tiny(["cebra3d"]), progress=False)
    with pytest.raises(ValueError, match=r"method 'ner' has no parameter\(s\) bach_size"):
        run_pipeline(data, tmp_path / "out", methods=["ner"], method_params={"ner": {"bach_size": 64}})
    with pytest.raises(ValueError, match="n_jobs"):
        run(data, tmp_path / "out", n_jobs=0)
    with pytest.raises(ValueError, match="iterations must be a positive integer or None, got 0"):
        run(data, tmp_path / "out", iterations=0)
    with pytest.raises(ValueError, match="'pivae' does not train in iterations"):
        run_pipeline(data, tmp_path / "out", methods=["pivae"], iterations=20, progress=False)
    with pytest.raises(ValueError, match="backend must be one of loky, dask, got 'ray'"):
        run(data, tmp_path / "out", backend="ray")
    with pytest.raises(ValueError, match="it names a folder"):
        ner.methods.register_method(dataclasses.replace(PCA_PLAIN, name="../escape"))
    with pytest.raises(ValueError, match="register_method takes a ner.methods.Method"):
        ner.methods.register_method(PCA_PLAIN.build)
    assert "../escape" not in ner.methods.METHODS
    assert not (tmp_path / "out").exists()


def test_command_line_options_run_the_pipeline(tmp_path, monkeypatch, capsys):
    data, out = write_sessions(tmp_path / "data", 1), tmp_path / "out"
    register(monkeypatch)
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)  # --reference's default
    common = ["reproduce", "--data-dir", str(data), "--out", str(out), "--methods", "pca_plain", "--quiet"]
    assert main(common) == 0
    assert capsys.readouterr().out.startswith("units: 1 computed, 0 up to date, 0 failed; tables: 2 written")
    provenance = read_npz(cache_path(out, Unit("syn0", "M1", "pca_plain")))["provenance"]
    assert json.loads(json.dumps(provenance)) == provenance
    assert provenance["iterations"] is None and provenance["parameters"]["n_components"] == 3

    # --set METHOD.PARAMETER=VALUE reaches the estimator (a JSON value), and is a new request.
    assert main([*common, "--set", "pca_plain.n_components=2"]) == 0
    assert capsys.readouterr().out.startswith("units: 1 computed, 0 up to date, 0 failed; tables: 2 written")
    cache = read_npz(cache_path(out, Unit("syn0", "M1", "pca_plain")))
    assert cache["provenance"]["parameters"]["n_components"] == 2 and cache["test_embedding"].shape == (80, 2)

    # --iterations is not dropped for a method without iterations: it is refused, and nothing is done.
    before = mtimes(out)
    assert main([*common, "--iterations", "20"]) == 2
    assert "'pca_plain' does not train in iterations" in capsys.readouterr().err
    assert main([*common, "--set", "pca_plain.n_components"]) == 2
    assert "must read METHOD.PARAMETER=VALUE" in capsys.readouterr().err
    assert mtimes(out) == before
    with pytest.raises(SystemExit):  # argparse refuses the removed Ray backend
        main([*common, "--backend", "ray"])
    assert "invalid choice: 'ray'" in capsys.readouterr().err


def test_tables_decode_with_both_decoders_and_cross_session_diagonals_match(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for seed, name in enumerate(("Monk_20200101", "Monk_20200102", "Other_20200101")):
        write_session_mat(reaching_session(name, seed), data / f"{name}_neural_con_dis_index.mat")
    register(monkeypatch)
    summary = run_pipeline(data, out, methods=["pca_plain"], progress=False)
    assert summary["failed"] == {} and len(summary["tables"]["computed"]) == 3

    table = read_npz(table_path(out, "M1"))
    cross = read_npz(cross_session_path(out, "Monk"))
    assert cross["units"].tolist() == ["Monk_20200101_M1", "Monk_20200102_M1"]
    for decoder, prefix in (("linear", ""), ("knn", "knn_")):
        for metric in ("velocity_r2", "position_r2", "peak_accuracy"):
            matrix = cross[f"{decoder}_{metric}"]
            assert matrix.shape == (1, 2, 2) and np.isfinite(matrix).all()
            # The diagonal is the same-session test split, scored exactly as the decoding table does.
            np.testing.assert_allclose(np.diag(matrix[0]), table[f"{prefix}test_{metric}"][0, :2])
    assert not np.allclose(table["knn_test_velocity_r2"], table["test_velocity_r2"])
    assert read_npz(cross_session_path(out, "Other"))["units"].tolist() == ["Other_20200101_M1"]


def test_snapshots_store_the_embedding_at_chosen_iterations(tmp_path):
    data, out = write_sessions(tmp_path / "data", 1), tmp_path / "out"
    summary = run(data, out, snapshots=[5, 20, 12])
    assert summary["failed"] == {}
    cache = read_npz(cache_path(out, Unit("syn0", "M1", "ner")))
    assert cache["snapshot_iterations"].tolist() == [5, 12, 20] and cache["provenance"]["snapshots"] == [5, 12, 20]
    assert cache["snapshot_train_embedding"].shape == (3, 320, 3) and cache["snapshot_test_embedding"].shape == (3, 80, 3)
    # The last snapshot is taken after the final update: it is the cached embedding itself.
    np.testing.assert_allclose(cache["snapshot_test_embedding"][-1], cache["test_embedding"], atol=1e-6)
    assert not np.allclose(cache["snapshot_test_embedding"][0], cache["test_embedding"], atol=1e-3)
    assert run(data, out, snapshots=[5, 12, 20])["skipped"] == ["ner/seed0/syn0_M1"]
    assert run(data, out)["computed"] == ["ner/seed0/syn0_M1"]  # a request without snapshots is another cache


def test_bad_snapshots_are_refused(tmp_path, monkeypatch):
    data = write_sessions(tmp_path / "data", 1)
    with pytest.raises(ValueError, match="snapshots must be iterations between 1 and iterations=20"):
        run(data, tmp_path / "out", snapshots=[0, 5])
    with pytest.raises(ValueError, match="snapshots must be"):
        run(data, tmp_path / "out", snapshots=[21])
    with pytest.raises(ValueError, match="snapshots need iterations"):
        run(data, tmp_path / "out", snapshots=[5], iterations=None)
    register(monkeypatch)
    with pytest.raises(ValueError, match="'pca_plain' does not train in iterations"):
        run_pipeline(data, tmp_path / "out", methods=["pca_plain"], snapshots=[5], iterations=20, progress=False)
    # A method that does train in iterations, but not with CEBRA's solver, cannot take snapshots either.
    monkeypatch.setitem(ner.methods.METHODS, "pca_iterated", Method(
        "pca_iterated", "PCA (iterated)", functools.partial(construct, "sklearn.decomposition:PCA", n_components=3),
        {"iterations": "iterated_power"}))
    with pytest.raises(ValueError, match="snapshots need a CEBRA-family method; 'pca_iterated' is a PCA"):
        run_pipeline(data, tmp_path / "out", methods=["pca_iterated"], snapshots=[5], iterations=20, progress=False)
    assert not (tmp_path / "out").exists()


SLOW_METHOD = """
import os, sys, time
from pathlib import Path
from sklearn.decomposition import PCA
from ner.methods import Method, register_method
from ner.workflow.run import run_pipeline

class Slow(PCA):
    def fit(self, X, y=None):
        Path(sys.argv[2], str(os.getpid())).touch()
        time.sleep(120)
        return super().fit(X)

def slow():
    return Slow(n_components=3)

register_method(Method("slow", "Slow PCA", slow))
run_pipeline(sys.argv[1], sys.argv[3], methods=["slow"], n_jobs=2, progress=False)
"""


def test_sigterm_stops_the_parallel_workers_too(tmp_path):
    data, pids = write_sessions(tmp_path / "data", 2), tmp_path / "pids"
    pids.mkdir()
    child = subprocess.Popen([sys.executable, "-c", SLOW_METHOD, str(data), str(pids), str(tmp_path / "out")],
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2:
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the workers did not start within 120 s"
        time.sleep(0.05)
    workers = [int(path.name) for path in pids.iterdir()]
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) != 0
    child.stderr.close()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "worker processes outlived the terminated pipeline"
        time.sleep(0.1)
    assert not (tmp_path / "out" / "embeddings").exists() or not list((tmp_path / "out").rglob("*.npz"))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed worker whose parent is gone may linger as a zombie until reaped: that is not running.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


def test_tables_redo_only_the_cells_whose_caches_changed(tmp_path, monkeypatch):
    from ner.workflow import tables

    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for seed, name in enumerate(("Monk_20200101", "Monk_20200102")):
        write_session_mat(reaching_session(name, seed), data / f"{name}_neural_con_dis_index.mat")
    register(monkeypatch, "pca_plain", "pca_other")
    run_pipeline(data, out, methods=["pca_plain", "pca_other"], progress=False)

    calls = {"decode": 0, "cross": 0}
    decode, cross = tables.decode_session, tables.cross_session_matrices

    def counted_decode(*args, **kwargs):
        calls["decode"] += 1
        return decode(*args, **kwargs)

    def counted_cross(*args, **kwargs):
        calls["cross"] += 1
        return cross(*args, **kwargs)

    monkeypatch.setattr(tables, "decode_session", counted_decode)
    monkeypatch.setattr(tables, "cross_session_matrices", counted_cross)
    summary = run_pipeline(data, out, methods=["pca_plain"], sessions=["Monk_20200102"], force=True, progress=False)
    assert summary["computed"] == ["pca_plain/seed0/Monk_20200102_M1"]
    # Only the changed cache is decoded again (linear and kNN), only its method's matrices are redone.
    assert calls == {"decode": 2, "cross": 2}
    kept = {"decoding": read_npz(table_path(out, "M1")), "cross": read_npz(cross_session_path(out, "Monk"))}
    tables.build_tables(out, force=True)
    fresh = {"decoding": read_npz(table_path(out, "M1")), "cross": read_npz(cross_session_path(out, "Monk"))}
    for which, table in kept.items():
        for key, value in table.items():
            if key != "provenance":
                np.testing.assert_allclose(value, fresh[which][key]) if value.dtype.kind == "f" else \
                    np.testing.assert_array_equal(value, fresh[which][key])


def test_a_dask_cluster_runs_the_units(tmp_path, monkeypatch):
    data = write_sessions(tmp_path / "data", 2)
    register(monkeypatch)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    serial = run_pipeline(data, tmp_path / "serial", methods=["pca_plain"], progress=False)
    on_dask = run_pipeline(data, tmp_path / "dask", methods=["pca_plain"], progress=False, n_jobs=2, backend="dask")
    assert sorted(on_dask["computed"]) == sorted(serial["computed"]) and on_dask["failed"] == {}
    unit = Unit("syn0", "M1", "pca_plain")
    np.testing.assert_allclose(read_npz(cache_path(tmp_path / "dask", unit))["test_embedding"],
                               read_npz(cache_path(tmp_path / "serial", unit))["test_embedding"], rtol=1e-5)
    # The Ray backend was removed: it is refused like any other unknown one.
    assert BACKENDS == ("loky", "dask")
    for backend in ("ray", "spark"):
        with pytest.raises(ValueError, match=f"backend must be one of loky, dask, got '{backend}'"):
            run_pipeline(data, tmp_path / "x", methods=["pca_plain"], backend=backend, progress=False)
    assert not (tmp_path / "x").exists()


def test_pivae_caches_hold_its_label_informed_embedding_too(tmp_path):
    data, out = write_sessions(tmp_path / "data", 1), tmp_path / "out"
    run_pipeline(data, out, methods=["pivae"], device="cpu", progress=False,
                 method_params={"pivae": {"epochs": 2, "window": 2, "batch_size": 64}})
    cache = read_npz(cache_path(out, Unit("syn0", "M1", "pivae")))
    for split in ("train", "test"):
        informed, free = cache[f"{split}_posterior_embedding"], cache[f"{split}_embedding"]
        assert informed.shape == free.shape and np.isfinite(informed).all()
        assert not np.allclose(informed, free)  # the labels moved it


def test_a_new_seed_rebuilds_tables_whose_other_methods_lack_it(tmp_path, monkeypatch):
    # The tables of seed 0 are reused cell by cell when seed 1 arrives; PCA has no seed 1 at all.
    data, out = write_sessions(tmp_path / "data", 2), tmp_path / "out"
    register(monkeypatch)
    params = {"ner": {**TINY, "max_iterations": 20}}
    run(data, out, methods=("ner", "pca_plain"), seeds=[0], iterations=None, method_params=params)
    summary = run(data, out, methods=("ner", "pca_plain"), seeds=[0, 1], iterations=None, method_params=params)
    assert summary["computed"] == ["ner/seed1/syn0_M1", "ner/seed1/syn1_M1"] and summary["failed"] == {}
    cross = read_npz(cross_session_path(out, "syn0"))
    assert cross["seeds"].tolist() == [0, 1]
    per_seed = cross["linear_position_r2_per_seed"]
    assert np.isfinite(per_seed[0]).all() and np.isfinite(per_seed[1, 0]).all() and np.isnan(per_seed[1, 1]).all()
