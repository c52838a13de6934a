"""Figure data: computed once from the caches, skipped while its inputs are unchanged, rebuilt when one changes."""

import json

import numpy as np
import pytest

from ner.data import synthetic_session, write_session_mat
from ner.evaluation.decoding import decode_session
from ner.workflow.figure_data import FIGURE_UNIT, build_figure_data
from ner.workflow.run import run_pipeline
from ner.workflow.store import Unit, cache_path, read_npz, result_path, write_npz

SESSION, AREA = FIGURE_UNIT


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Caches of NER and CEBRA 3-D for the unit Figs 1 and 2 show, trained briefly on a synthetic stand-in."""
    root = tmp_path_factory.mktemp("figure_data")
    write_session_mat(synthetic_session(n_neurons=12, seed=0),
                      root / "data" / f"{SESSION}_neural_con_dis_index.mat")
    summary = run_pipeline(root / "data", root / "out", methods=["ner", "cebra3d"], iterations=20, device="cpu",
                           progress=False, method_params={m: {"batch_size": 64} for m in ("ner", "cebra3d")})
    assert summary["failed"] == {}
    assert sorted(summary["figure_data"]["computed"]) == sorted(
        str(result_path(root / "out", name)) for name in (f"decoded_{SESSION}_{AREA}", f"rank_agreement_{SESSION}_{AREA}"))
    return root / "out"


def test_decoded_velocity_is_the_linear_readout_of_each_cache(out):
    decoded = read_npz(result_path(out, f"decoded_{SESSION}_{AREA}"))
    for k, method in enumerate(decoded["methods"]):
        cache = read_npz(cache_path(out, Unit(SESSION, AREA, str(method))))
        expected = decode_session(cache["train_embedding"], cache["train_labels"], cache["test_embedding"],
                                  cache["test_labels"], int(cache["trial_length"]))["test_predicted_velocity"]
        np.testing.assert_allclose(decoded["test_predicted_velocity"][k], expected, atol=1e-12)


def test_rank_agreement_pairs_label_and_latent_distances(out):
    agreement = read_npz(result_path(out, f"rank_agreement_{SESSION}_{AREA}"))
    assert agreement["label_distance"].shape == agreement["latent_distance"].shape == (200, 400)
    assert agreement["spearman_rho"].shape == (200,) and np.all(np.abs(agreement["spearman_rho"]) <= 1)


def test_unchanged_inputs_are_skipped_and_a_changed_one_rebuilds(out):
    again = build_figure_data(out)
    assert again["computed"] == [] and len(again["skipped"]) == 2
    target = result_path(out, f"decoded_{SESSION}_{AREA}")
    before = target.stat().st_mtime_ns
    cache_file = cache_path(out, Unit(SESSION, AREA, "cebra3d"))
    cache = read_npz(cache_file)
    cache["provenance"]["seed"] = 99  # a different cache under the same name
    write_npz(cache_file, {**cache, "provenance": np.array(json.dumps(cache["provenance"]))})
    rebuilt = build_figure_data(out)
    assert rebuilt["computed"] == [str(target)] and target.stat().st_mtime_ns > before


def test_a_reference_folder_without_the_original_results_is_refused(out, tmp_path):
    with pytest.raises(ValueError, match="holds no upstream_data_NER"):
        build_figure_data(out, reference_dir=tmp_path)


def test_protocols_show_each_paper_entry_as_the_range_of_its_reachable_rotations():
    from test_parity import synthetic_session as split_session

    from ner.evaluation.decoding import SCORES
    from ner.workflow.figure_data import PROTOCOL_SESSIONS, _protocols

    caches = {}
    for k, session in enumerate(PROTOCOL_SESSIONS):
        for method in ("ner", "cebra3d"):
            s = split_session(k + (10 if method == "ner" else 0), n_train=3, n_test=2)
            caches[f"{method}/{session}"] = {"train_embedding": s.train_embedding, "train_labels": s.train_labels,
                                             "test_embedding": s.test_embedding, "test_labels": s.test_labels,
                                             "trial_length": 40}
    arrays = _protocols(caches)
    off = ~np.eye(len(PROTOCOL_SESSIONS), dtype=bool)
    for m in SCORES:
        value, low, high = arrays[m], arrays[f"{m}_low"], arrays[f"{m}_high"]
        assert np.all(low <= value + 1e-12) and np.all(value <= high + 1e-12)
        assert np.array_equal(low[:, 1], high[:, 1])  # corrected: one alignment, one number
        assert np.array_equal(low[:, :, ~off], high[:, :, ~off])  # the diagonal has no rotation
    # The paper's entries do spread: the rule's candidates decode differently.
    assert any(np.any(arrays[f"{m}_high"][:, 0][:, off] > arrays[f"{m}_low"][:, 0][:, off]) for m in SCORES)
