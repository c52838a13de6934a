import json

import pytest

from ner.cli import main


def test_demo_json_reports_both_methods(capsys, tmp_path):
    assert main(["demo", "--iterations", "30", "--json", "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"NER", "CEBRA"}
    for scores in results.values():
        for key in ("train_velocity_r2", "test_velocity_r2", "train_position_r2",
                    "test_position_r2"):
            assert -10 < scores[key] <= 1
    assert (tmp_path / "demo_synthetic_seed0_M1.png").stat().st_size > 10_000
    assert (tmp_path / "demo_synthetic_seed0_M1.pdf").exists()


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
