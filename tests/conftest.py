"""Shared fixtures: where the real session files and the original paper's cached results live."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real session files ($NER_DATA_DIR); tests that need them skip when it is not set up."""
    value = os.environ.get("NER_DATA_DIR")
    if not value:
        pytest.skip("NER_DATA_DIR is not set: point it at the session .mat files to run real-data tests")
    path = Path(value)
    if not any(path.glob("*_neural_con_dis_index.mat")):
        pytest.skip(f"NER_DATA_DIR={value} holds no *_neural_con_dis_index.mat files")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The original paper's cached results: $NER_REFERENCE_DIR, else a `reference` folder beside NER_DATA_DIR."""
    value = os.environ.get("NER_REFERENCE_DIR")
    if not value and os.environ.get("NER_DATA_DIR"):
        value = str(Path(os.environ["NER_DATA_DIR"]).parent / "reference")
    path = Path(value) if value else None
    if path is None or not (path / "upstream_data_NER").is_dir():
        pytest.skip("original cached results not found: set NER_REFERENCE_DIR to the folder holding upstream_data_NER/")
    return path
