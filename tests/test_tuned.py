"""`<method>_tuned` in the pipeline: a real sweep's settings, per area, trained at the pipeline's length."""

import json

import pytest
from test_run import reaching_session

import ner.methods
from ner.data import load_session, write_session_mat
from ner.methods import display_name, make_method
from ner.workflow.run import run_pipeline
from ner.workflow.store import Unit, cache_path, read_npz
from ner.workflow.tune import SearchSpace, read_tuning, tune
from ner.workflow.tuned import is_tuned, register_tuned, tuning_records

pytest.importorskip("optuna")  # the sweep's extra

SPACE = SearchSpace(temperature=(0.5, 2.0), time_offsets=(1, 3), learning_rate=(1e-3, 1e-2),
                    num_hidden_units=(8, 16), batch_size=(48, 64))


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    # A tuned method registered in a test must not outlive it: monkeypatch removes the entry after.
    monkeypatch.setitem(ner.methods.METHODS, "ner_tuned", ner.methods.METHODS["ner"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sessions")
    for seed, area in ((0, "M1"), (1, "M1"), (2, "PMd")):
        write_session_mat(reaching_session(f"syn{seed}", seed, area=area, n_trials=60),
                          folder / f"syn{seed}_neural_con_dis_index.mat")
    return folder


def record(out, session, area, params, method="ner"):
    path = out / "tuning" / f"{method}_{session}_{area}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": method, "session": session, "area": area, "params": params,
                                "iterations": 5, "study_name": f"{method}_{session}_{area}_5it"}))


def test_a_real_sweep_sets_every_unit_of_its_area_at_the_pipelines_length(data, tmp_path):
    tune(load_session(data / "syn0_neural_con_dis_index.mat", "M1"), "ner", iterations=5, n_trials=2,
         out_dir=tmp_path, device="cpu", space=SPACE, progress=False)
    chosen = read_tuning(tmp_path, "ner", "syn0", "M1")["params"]
    # The pipeline's own setting wins over the record's (here, the batch size).
    summary = run_pipeline(data, tmp_path, methods=["ner_tuned"], areas=["M1"], iterations=12, device="cpu",
                           progress=False, method_params={"ner_tuned": {"batch_size": 32}})
    assert not summary["failed"] and sorted(summary["computed"]) == ["ner_tuned/seed0/syn0_M1",
                                                                      "ner_tuned/seed0/syn1_M1"]
    for session in ("syn0", "syn1"):
        provenance = read_npz(cache_path(tmp_path, Unit(session, "M1", "ner_tuned", 0)))["provenance"]
        parameters = provenance["parameters"]
        assert provenance["iterations"] == parameters["max_iterations"] == 12  # not the sweep's 5
        assert parameters["batch_size"] == 32
        assert {key: parameters[key] for key in chosen if key != "batch_size"} == {
            key: value for key, value in chosen.items() if key != "batch_size"}
    decoding = read_npz(tmp_path / "results" / "decoding_M1.npz")
    assert "ner_tuned" in list(decoding["methods"]) and display_name("ner_tuned") == "NER, tuned"
    again = run_pipeline(data, tmp_path, methods=["ner_tuned"], areas=["M1"], iterations=12, device="cpu",
                         progress=False, method_params={"ner_tuned": {"batch_size": 32}})
    assert again["computed"] == [] and len(again["skipped"]) == 2


def test_each_area_takes_its_own_settings(tmp_path):
    record(tmp_path, "syn0", "M1", {"temperature": 0.5, "num_hidden_units": 16})
    record(tmp_path, "syn2", "PMd", {"temperature": 2.0, "num_hidden_units": 8})
    record(tmp_path, "syn0", "M1", {"temperature": 3.0}, method="ner_search_all")  # another method's record
    assert sorted(tuning_records(tmp_path, "ner")) == ["M1", "PMd"]
    entry = register_tuned("ner", tmp_path)
    assert is_tuned("ner_tuned") and not is_tuned("ner") and not is_tuned("nosuch_tuned")
    m1, pmd = (make_method("ner_tuned", area=area) for area in ("M1", "PMd"))
    assert (m1.temperature, m1.num_hidden_units, pmd.temperature, pmd.num_hidden_units) == (0.5, 16, 2.0, 8)
    assert make_method("ner_tuned", area="M1", params={"temperature": 1.0}).temperature == 1.0
    assert entry.build is ner.methods.METHODS["ner"].build


def test_bad_requests_are_clear_errors(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="ner tune --methods ner"):
        run_pipeline(data, tmp_path, methods=["ner_tuned"], iterations=5, device="cpu", progress=False)
    record(tmp_path, "syn0", "M1", {"temperature": 0.5})
    with pytest.raises(ValueError, match="no tuned settings for PMd"):
        run_pipeline(data, tmp_path, methods=["ner_tuned"], iterations=5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="settings for area.s. M1, not for 'S1'"):
        make_method("ner_tuned", area="S1")
    record(tmp_path, "syn1", "M1", {"temperature": 0.7})
    with pytest.raises(ValueError, match="two M1 units"):
        tuning_records(tmp_path, "ner")
    (tmp_path / "tuning" / "ner_syn1_M1.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a tuning record"):
        tuning_records(tmp_path, "ner")
