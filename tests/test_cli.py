import json

import matplotlib.image
import pytest

from ner.cli import main
from ner.data import synthetic_session
from ner.demo import REPORTED, run_demo


def test_demo_json_reports_both_methods(capsys, tmp_path):
    assert main(["demo", "--iterations", "30", "--json", "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"NER", "CEBRA"} and all(list(scores) == list(REPORTED) for scores in results.values())
    # The command hands its options through: NER (seeded) reports what run_demo gives for them.
    direct = run_demo(synthetic_session(seed=0), iterations=30, seed=0, device="cpu", verbose=False)
    assert results["NER"] == pytest.approx(direct["NER"], abs=1e-12)
    image = matplotlib.image.imread(tmp_path / "demo_synthetic_seed0_M1.png")
    assert min(image.shape[:2]) > 300 and image[..., :3].std() > 0.05
    assert (tmp_path / "demo_synthetic_seed0_M1.pdf").read_bytes().startswith(b"%PDF")


def test_sessions_lists_the_data_directory(capsys, data_dir):
    assert main(["sessions", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("13 sessions")
    assert "Chewie_20161007      M1 PMd" in out and "Han_20171201         S1" in out


def test_sessions_in_an_empty_folder_says_how_to_fetch(capsys, tmp_path):
    assert main(["sessions", "--data-dir", str(tmp_path)]) == 0
    assert "ner fetch" in capsys.readouterr().out


def test_unknown_session_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path))
    assert main(["demo", "--session", "Chewie_19990101", "--out", str(tmp_path)]) == 2
    assert "Chewie_19990101" in capsys.readouterr().err


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["train-everything"])
