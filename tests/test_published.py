"""The stored Fig 4 numbers beside ours: unit names, the three protocols, per-seed medians, group medians."""
import json

import numpy as np
import pytest
from test_parity import synthetic_session, write_embedding, write_table

from ner.cli import main
from ner.evaluation.decoding import SCORES, decode_session
from ner.workflow.figure_data import build_figure_data
from ner.workflow.published import (
    COLUMNS,
    build_published,
    format_published,
    group_medians,
    published_request,
    stored_units,
)
from ner.workflow.store import Unit, cache_path, publish, read_npz, result_path

DATES = ("150629", "150630")


def stored_values(k):
    """Distinct stored numbers per row: score s, split c of row k (accuracy as a fraction)."""
    return {m: np.array([[0.1 * (s + 1) + 0.01 * c + 0.001 * row for c in (0, 1)] for row in range(k)])
            for s, m in enumerate(SCORES)}


@pytest.fixture
def folders(tmp_path):
    """An original folder scoring two NER sessions (one with garbled row names, as piVAE's PMd table has)
    and our caches: seeds 0 and 1 of the first session, seed 0 of the second."""
    upstream, ours = tmp_path / "upstream", tmp_path / "ours"
    write_table(upstream / "Fig4" / "NPZ_M1" / "NER_Chewie2015.npz", list(DATES), stored_values(2))
    write_table(upstream / "Fig4" / "NPZ_M1" / "piVAE_Chewie2015.npz", ["Z/Chew", "Z/Chew"], stored_values(2))
    for k, date in enumerate(DATES):
        write_embedding(upstream, "piVAE_Chewie", date, synthetic_session(k))
    for session, seeds in (("Chewie_20150629", (0, 1)), ("Chewie_20150630", (0,))):
        for seed in seeds:
            s = synthetic_session(10 * seed + len(session) + int(session[-1]), n_train=3, n_test=2)
            publish(cache_path(ours, Unit(session, "M1", "ner", seed)),
                    {"train_embedding": s.train_embedding, "train_labels": s.train_labels,
                     "test_embedding": s.test_embedding, "test_labels": s.test_labels, "trial_length": 40},
                    {"method": "ner", "session": session, "area": "M1", "seed": seed})
    for session, informed in (("Chewie_20150629", synthetic_session(7, n_train=3, n_test=2)), ("Chewie_20150630", None)):
        s = synthetic_session(8, n_train=3, n_test=2)
        arrays = {"train_embedding": s.train_embedding, "train_labels": s.train_labels,
                  "test_embedding": s.test_embedding, "test_labels": s.test_labels, "trial_length": 40}
        if informed is not None:  # the second cache predates the posterior embeddings
            arrays.update(train_posterior_embedding=informed.train_embedding,
                          test_posterior_embedding=informed.test_embedding)
        publish(cache_path(ours, Unit(session, "M1", "pivae")), arrays,
                {"method": "pivae", "session": session, "area": "M1", "seed": 0})
    return upstream, ours


def test_stored_rows_become_units_with_fractions_and_garbled_names_are_recovered(folders):
    upstream, _ = folders
    units, unnamed = stored_units(upstream)
    assert unnamed == []
    # piVAE's row is set beside both of its embeddings: label-free and label-informed.
    assert set(units) == {Unit(f"Chewie_20{d}", "M1", m) for d in DATES for m in ("ner", "pivae", "pivae_posterior")}
    expected = stored_values(2)
    first = units[Unit("Chewie_20150630", "M1", "ner")]
    # Columns train scores, then test scores; the stored percentages come back as fractions.
    assert first.tolist() == pytest.approx([expected[m][1, c] for c in (0, 1) for m in SCORES])


def test_table_scores_each_seed_both_ways_and_takes_medians(folders):
    upstream, ours = folders
    table = build_published(ours, upstream)
    ner = table["methods"] == "ner"
    assert table["sessions"][ner].tolist() == ["Chewie_20150629", "Chewie_20150630"]
    assert table["seeds"].tolist() == [0, 1] and table["paper_per_seed"].shape == (6, 2, 6)  # ner, pivae x 2
    assert np.isnan(table["paper_per_seed"][ner][1, 1]).all()  # the second session has no seed 1
    data = read_npz(cache_path(ours, Unit("Chewie_20150629", "M1", "ner", 1)))
    for protocol, legacy in (("paper", True), ("corrected", False)):
        scores = decode_session(data["train_embedding"], data["train_labels"], data["test_embedding"],
                                data["test_labels"], 40, legacy=legacy)
        assert table[f"{protocol}_per_seed"][ner][0, 1] == pytest.approx([scores[c] for c in COLUMNS])
        assert table[protocol][ner][0] == pytest.approx(np.median(table[f"{protocol}_per_seed"][ner][0], axis=0))
    # The protocols differ in the test velocity R² alone (the original's swapped arguments).
    same = np.isclose(table["paper_per_seed"], table["corrected_per_seed"], equal_nan=True).all(axis=(0, 1))
    assert same.tolist() == [c != "test_velocity_r2" for c in COLUMNS]


def test_pivae_is_scored_on_both_of_its_embeddings(folders):
    upstream, ours = folders
    table = build_published(ours, upstream)
    rows = {(m, s): k for k, (m, s) in enumerate(zip(table["methods"], table["sessions"]))}
    free, informed = table["paper"][rows["pivae", "Chewie_20150629"]], table["paper"][rows["pivae_posterior", "Chewie_20150629"]]
    data = read_npz(cache_path(ours, Unit("Chewie_20150629", "M1", "pivae")))
    scores = decode_session(data["train_posterior_embedding"], data["train_labels"], data["test_posterior_embedding"],
                            data["test_labels"], 40, legacy=True)
    assert informed == pytest.approx([scores[c] for c in COLUMNS]) and not np.allclose(informed, free)
    assert np.isnan(table["paper"][rows["pivae_posterior", "Chewie_20150630"]]).all()  # a cache without it
    assert np.isfinite(table["paper"][rows["pivae", "Chewie_20150630"]]).all()


def test_group_medians_pair_units_and_text_shows_them(folders):
    upstream, ours = folders
    table = build_published(ours, upstream)
    rows = {row["group"]: row for row in group_medians(table) if row["method"] == "ner"}
    assert set(rows) == {"all", "M1", "Chewie"} and rows["all"]["units"] == 2
    ner = table["methods"] == "ner"
    paired = np.median(table["paper"][ner] - table["published"][ner], axis=0)
    assert list(rows["M1"]["paper - published"].values()) == pytest.approx(paired.tolist())
    text = format_published(table)
    assert "Chewie_20150630 M1" in text and "ours-publ." in text


def test_cli_prints_the_pipeline_table_or_computes_it(folders, capsys):
    upstream, ours = folders
    assert main(["compare", "--upstream", str(upstream), "--published", "--out", str(ours), "--json"]) == 0
    computed = json.loads(capsys.readouterr().out)
    assert computed["methods"].count("ner") == 2 and computed["medians"]
    reference = upstream.parent / "reference"
    reference.mkdir()
    (reference / "upstream_data_NER").symlink_to(upstream)
    summary = build_figure_data(ours, reference_dir=reference)
    target = result_path(ours, "published")
    assert str(target) in summary["computed"]
    assert read_npz(target)["provenance"]["inputs"] == published_request(ours, upstream)["inputs"]
    assert main(["compare", "--upstream", str(upstream), "--published", "--out", str(ours), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper"] == computed["paper"]


def test_no_cache_of_a_stored_unit_is_an_error(folders, tmp_path):
    upstream, _ = folders
    with pytest.raises(ValueError, match="no cache of a unit"):
        build_published(tmp_path / "empty", upstream)
