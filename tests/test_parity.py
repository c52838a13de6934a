import json
import os
from pathlib import Path

import numpy as np
import pytest

from ner.cli import main
from ner.reference.layout import load_embeddings
from ner.reference.parity import compare, format_report

REFERENCE = os.environ.get("NER_REFERENCE_DIR")
needs_reference = pytest.mark.skipif(not REFERENCE, reason="set NER_REFERENCE_DIR to the shared reference folder")
TOL = 1e-3


def upstream():
    return Path(REFERENCE) / "upstream_data_NER"


@pytest.fixture(scope="module")
def ner_result():
    return compare(upstream(), methods=["NER_Chewie"])


@needs_reference
@pytest.mark.slow
def test_fig4_tables_and_fig5_diagonal_match_stored_numbers(ner_result):
    assert ner_result["fig3"]["max_abs_diff"] < 1e-12
    diffs = ner_result["fig4"]["NER_Chewie"]["max_abs_diff"]
    # The stored Fig 4 tables (NER_Chewie2015/2016.npz) are found under their method's name, train and test.
    assert {f"Fig4 {split}_{m}" for split in ("train", "test")
            for m in ("velocity_r2", "position_r2", "peak_accuracy")} <= set(diffs)
    assert {"Fig5 diagonal test_velocity_r2", "Fig5 diagonal test_position_r2", "Fig5 diagonal test_peak_accuracy"} <= set(diffs)
    assert max(diffs.values()) < TOL


@needs_reference
@pytest.mark.slow
def test_fig5_unambiguous_entries_match_and_ambiguity_is_real(ner_result):
    fig5 = ner_result["fig5"]["NER_Chewie"]
    for pair in fig5["pairs"]:
        if not pair["ambiguous"]:
            assert pair["error"] <= TOL, pair
        else:
            assert pair["candidate_spread"] > TOL
    assert fig5["n_unambiguous"] >= len(fig5["sessions"])  # at least the diagonal
    # The legacy protocol is right when some candidate of the noisy pick reproduces the stored entry.
    assert fig5["n_reproduced_by_some_candidate"] > 0.8 * len(fig5["pairs"])
    corrected = np.asarray(fig5["corrected"]["position_r2"])
    assert corrected.shape == (len(fig5["sessions"]),) * 2 and np.all(np.isfinite(corrected))


@needs_reference
@pytest.mark.slow
def test_report_text_and_json(ner_result, capsys):
    text = format_report(ner_result)
    assert "Fig 5" in text and "NER_Chewie" in text
    assert main(["compare", "--upstream", str(upstream()), "--methods", "NER_Chewie", "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["fig5"]["NER_Chewie"]["sessions"] == ner_result["fig5"]["NER_Chewie"]["sessions"]


@needs_reference
def test_averages_only_folders_listed():
    found, averages_only = load_embeddings(upstream())
    assert "PCA_Chewie" in averages_only and "PCA_Chewie" not in found
    assert len(found["NER_Chewie"]) == 7 and all(len(s.train_labels) % 40 == 0 for s in found["NER_Chewie"].values())


def test_missing_folder_raises(tmp_path):
    with pytest.raises(ValueError, match=r"M1 4\+6\+6 not found: pass the data_NER folder"):
        compare(tmp_path)


@needs_reference
@pytest.mark.slow
def test_statistics_pair_methods_on_common_sessions():
    result = compare(upstream(), methods=["NER_Chewie", "Cebra_Chewie"])
    statistics = result["statistics"]
    # NER has 7 of CEBRA's 10 sessions: the tests pair the 42 cross-session entries of those 7.
    assert len(statistics["sessions"]) == 7
    ttest = statistics["tests"]["position_r2"]["paired_ttest"]
    ((a, b), t), = ttest.items()
    assert t["df"] == 41
    ner_minus_cebra = t["mean_difference"] * (1 if a == "NER_Chewie" else -1)
    assert ner_minus_cebra > 0.1 and t["pvalue"] < 1e-6
    assert "paired t-test" in format_report(result)
