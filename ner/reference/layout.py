"""The original authors' ``data_NER/`` folder: their M1 embeddings and their stored result tables.

``M1 4+6+6/<Method>_<Subject>[year]/NPZ/*.npz`` hold per-session embeddings (``cebra_veldir_{train,test}``)
and labels (``continuous_index_{train,test}``); ``Fig4/NPZ_M1/<Method>_<Subject><year>.npz`` the
published per-session numbers ([train, test] columns); ``Fig5/<Method>.npz`` the 10 x 10 Chewie M1
cross-session matrices; ``Fig3/anchor_emb_Chewie_20161014.npz`` the rotation anchor. Stored accuracies
are percentages, ours fractions: :data:`STORED_SCALE` converts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ner.evaluation.cross_session import SplitEmbedding
from ner.evaluation.decoding import SCORES

__all__ = ["TRIAL_LENGTH", "EMBEDDING_DIR", "STORED_SCALE", "load_embeddings", "stored_fig4", "stored_fig5",
           "stored_anchor"]

TRIAL_LENGTH = 40  # every Chewie M1 trial of the original
EMBEDDING_DIR = "M1 4+6+6"
STORED_SCALE = {"velocity_r2": 1.0, "position_r2": 1.0, "peak_accuracy": 100.0}
_STORED_KEY = {"velocity_r2": "vel_R_2D", "position_r2": "pos_R_2D", "peak_accuracy": "peak_acc_2D"}
_DATE = re.compile(r"_(?:20)?(\d{6})_")
_YEAR_SUFFIX = re.compile(r"(20\d\d)$")


def method_of(folder_or_stem: str) -> str:
    """The original's method name without its year: ``UMAP_Chewie2015`` -> ``UMAP_Chewie``."""
    return _YEAR_SUFFIX.sub("", folder_or_stem)


def load_embeddings(upstream_dir) -> tuple[dict, list[str]]:
    """``({method: {yymmdd: SplitEmbedding}}, methods with trial averages only)`` of the M1 folder.

    Folders holding trial averages only (PCA, dPCA) have no test split: nothing to decode there.
    """
    root = Path(upstream_dir) / EMBEDDING_DIR
    if not root.is_dir():
        raise ValueError(f"{root} not found: pass the data_NER folder that holds '{EMBEDDING_DIR}/'")
    found, averages_only = {}, set()
    for path in sorted(root.glob("*/NPZ/*.npz")):
        method = method_of(path.parent.parent.name)
        date = _DATE.search(path.name)
        if date is None:
            continue
        with np.load(path) as data:
            if "cebra_veldir_test" not in data:
                averages_only.add(method)
                continue
            session = SplitEmbedding(*(np.asarray(data[k]) for k in (
                "cebra_veldir_train", "continuous_index_train", "cebra_veldir_test", "continuous_index_test")))
        found.setdefault(method, {})[date.group(1)] = session
    return found, sorted(averages_only)


def _table(path: Path, names) -> dict:
    """One stored table; ``names(data)`` reads its session names."""
    with np.load(path) as data:
        return {"names": names(data), **{m: np.asarray(data[_STORED_KEY[m]], dtype=float) for m in SCORES}}


def stored_fig4(upstream_dir) -> dict:
    """``{method: {"names": [yymmdd], score: (sessions x [train, test])}}`` of ``Fig4/NPZ_M1``, the
    cohorts of one method (``NER_Chewie2015``, ``NER_Chewie2016``) joined."""
    stored = {}
    for path in sorted((Path(upstream_dir) / "Fig4" / "NPZ_M1").glob("*.npz")):
        table = _table(path, lambda data: [str(d)[-6:] for d in data["date_subjects"]])
        joined = stored.setdefault(method_of(path.stem), {"names": [], **{m: [] for m in SCORES}})
        joined["names"] += table["names"]
        for m in SCORES:
            joined[m].append(table[m])
    return {method: {"names": t["names"], **{m: np.concatenate(t[m]) for m in SCORES}} for method, t in stored.items()}


def stored_fig5(upstream_dir) -> dict:
    """``{method: {"names": [yymmdd], score: (n x n)}}`` of ``Fig5/*.npz`` (linear decoders)."""
    # date_subjects repeats each session once per column: the row order is its unique order.
    return {path.stem: _table(path, lambda data: list(dict.fromkeys(str(d) for d in data["date_subjects"])))
            for path in sorted((Path(upstream_dir) / "Fig5").glob("*.npz")) if not path.stem.endswith("_kNN")}


def stored_anchor(upstream_dir) -> np.ndarray | None:
    """The Fig 3 anchor as ``(8 directions, 40 bins, 3 dims)`` (stored as bins x dims x directions)."""
    path = Path(upstream_dir) / "Fig3" / "anchor_emb_Chewie_20161014.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return np.asarray(data["anchor_emb"]).transpose(2, 0, 1)
