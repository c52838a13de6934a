"""The original authors' ``data_NER/`` folder: their embeddings and their stored result tables.

Embeddings (keys ``cebra_veldir_{train,test}``, labels ``continuous_index_{train,test}``):
``M1 4+6+6/<Method>_<Subject>[year]/NPZ/*.npz`` (M1), ``PMd 6+6/<Method>_Chewie2016/NPZ/*_PMd.npz`` (PMd) and
``PMd 6+6/<Method>_Chewie2016_M1PMd/NPZ/*`` (both areas of each 2016 session, for Fig 6). Stored tables:
``Fig4/NPZ_M1[/Mihili]`` and ``Fig4/NPZ_PMd_S1`` (per session, [train, test] columns), ``Fig5/<Method>[_kNN].npz``
(10 x 10 Chewie M1 cross-session), ``Fig6/<Method>.npz`` (12 x 12 Chewie 2016 M1 + PMd),
``Fig3/anchor_emb_Chewie_20161014.npz`` (the rotation anchor). Stored accuracies are percentages, ours
fractions: :data:`STORED_SCALE` converts.

A few stored tables name their rows with garbage (the original sliced file names at fixed offsets);
their rows follow the original's date-sorted file order, from which :func:`recover_names` rebuilds them.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from ner.evaluation.cross_session import SplitEmbedding
from ner.evaluation.decoding import SCORES

__all__ = [
    "EMBEDDING_DIR",
    "FIGURES",
    "PMD_DIR",
    "STORED_SCALE",
    "TRIAL_LENGTH",
    "check_upstream",
    "load_embeddings",
    "load_pmd_embeddings",
    "method_of",
    "recover_names",
    "stored_anchor",
    "stored_fig4",
    "stored_fig5",
    "stored_tables",
]

TRIAL_LENGTH = 40  # every Chewie trial of the original
EMBEDDING_DIR = "M1 4+6+6"
PMD_DIR = "PMd 6+6"
STORED_SCALE = {"velocity_r2": 1.0, "position_r2": 1.0, "peak_accuracy": 100.0}
# Report figure -> (stored folder, file pattern, kind): "sessions" tables have one row per session.
FIGURES = {
    "fig4_M1": ("Fig4/NPZ_M1", "**/*.npz", "sessions"),
    "fig4_PMd_S1": ("Fig4/NPZ_PMd_S1", "*.npz", "sessions"),
    "fig5": ("Fig5", "*.npz", "linear"),
    "fig5_knn": ("Fig5", "*_kNN.npz", "knn"),
    "fig6": ("Fig6", "*.npz", "linear"),
}
_STORED_KEY = {"velocity_r2": "vel_R_2D", "position_r2": "pos_R_2D", "peak_accuracy": "peak_acc_2D"}
_DATE = re.compile(r"_(?:20)?(\d{6})_")
_SUFFIX = re.compile(r"(?:20\d\d)?(?:_M1PMd)?$")
_ROW_NAME = re.compile(r"\d{6}(M1|PM)?$")


def check_upstream(upstream_dir) -> Path:
    """``upstream_dir`` as a Path, or a ValueError saying why it is no original ``data_NER/`` folder."""
    root = Path(upstream_dir)
    expected = f"the original authors' data_NER folder (holding '{EMBEDDING_DIR}/', 'Fig4/', 'Fig5/')"
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder: pass {expected}")
    if not (root / EMBEDDING_DIR).is_dir() and not (root / PMD_DIR).is_dir():
        raise ValueError(f"{root}/{EMBEDDING_DIR} not found: pass the data_NER folder of the original authors, "
                         f"which holds '{EMBEDDING_DIR}/', '{PMD_DIR}/', 'Fig4/', 'Fig5/' and 'Fig6/'")
    return root


def method_of(folder_or_stem: str) -> str:
    """The original's method name without year and area: ``UMAP_Chewie2015`` -> ``UMAP_Chewie``,
    ``NER_Chewie2016_M1PMd`` -> ``NER_Chewie``, ``NER_Chewie_kNN`` -> ``NER_Chewie``."""
    return _SUFFIX.sub("", folder_or_stem.removesuffix("_kNN"), count=1)


def _read(path: Path, read):
    """``read(data)`` of one .npz file; a file that is no readable original one is a ValueError naming it."""
    try:
        with np.load(path) as data:
            return read(data)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} cannot be read as one of the original's .npz files: {error!r}") from error


def _session(path: Path) -> SplitEmbedding | None:
    def read(data):
        if "cebra_veldir_test" not in data:
            return None
        return SplitEmbedding(*(np.asarray(data[k]) for k in (
            "cebra_veldir_train", "continuous_index_train", "cebra_veldir_test", "continuous_index_test")))

    return _read(path, read)


def _area_tag(path: Path) -> str:
    """Fig 6's row suffix: ``M1`` for the M1 runs (``_M10``/``_M1`` files), ``PM`` for PMd."""
    return "PM" if path.stem.endswith("PMd") else "M1"


def _load(folders, tagged=False, averages_only=None) -> dict:
    found = {}
    for folder in folders:
        for path in sorted(folder.glob("NPZ/*.npz")):
            date = _DATE.search(path.name)
            if date is None:
                continue
            session = _session(path)
            if session is None:
                if averages_only is not None:
                    averages_only.add(method_of(folder.name))
                continue
            key = date.group(1) + (_area_tag(path) if tagged else "")
            found.setdefault(method_of(folder.name), {})[key] = session
    return found


def load_embeddings(upstream_dir) -> tuple[dict, list[str]]:
    """``({method: {yymmdd: SplitEmbedding}}, methods with trial averages only)`` of the M1 folder.

    Folders holding trial averages only (PCA, dPCA) have no test split: nothing to decode there.
    """
    root = Path(upstream_dir) / EMBEDDING_DIR
    if not root.is_dir():
        raise ValueError(f"{root} not found: pass the data_NER folder that holds '{EMBEDDING_DIR}/'")
    averages_only = set()
    found = _load(sorted(p for p in root.iterdir() if p.is_dir()), averages_only=averages_only)
    return found, sorted(averages_only)


def load_pmd_embeddings(upstream_dir) -> tuple[dict, dict]:
    """``(PMd, M1 + PMd)`` embeddings of ``PMd 6+6/``: ``{method: {yymmdd: ...}}`` from the single-area
    ``<Method>_Chewie2016`` folders (the PMd sessions of Fig 4), and ``{method: {yymmdd + "M1"|"PM": ...}}``
    from the ``_M1PMd`` folders (Fig 6's rows). Empty where the folder is absent."""
    root = Path(upstream_dir) / PMD_DIR
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    pmd = _load(f for f in folders if not f.name.endswith("_M1PMd"))
    both = _load((f for f in folders if f.name.endswith("_M1PMd")), tagged=True)
    return pmd, both


def recover_names(rows, known) -> tuple[list[str] | None, bool]:
    """``(names, recovered)`` of a stored table's rows; ``known`` are the session keys of the embeddings
    folder the original read (all of them, or the recovery is refused: ``(None, False)``).

    Well-formed rows (``yymmdd`` or ``yymmdd`` + ``M1``/``PM``) are kept. Garbled ones are rebuilt from the
    original's file order: sorted by date, the area read from the row's last two characters.
    """
    rows = [str(r) for r in rows]
    if all(_ROW_NAME.match(r) for r in rows):
        return rows, False
    known = sorted(known)
    dates = sorted({k[:6] for k in known})
    if not dates or len(rows) != len(known) or len(rows) % len(dates):
        return None, False
    per_date = len(rows) // len(dates)
    tags = [("" if per_date == 1 else "PM" if r.endswith("PM") else "M1") for r in rows]
    names = [dates[k // per_date] + tag for k, tag in enumerate(tags)]
    return (names, True) if sorted(names) == known else (None, False)


def _read_table(path: Path, kind: str) -> dict:
    table, subjects = _read(path, lambda data: ({**{m: np.asarray(data[_STORED_KEY[m]], dtype=float) for m in SCORES},
                                                 "accuracy_curves": np.asarray(data["acc_time_2D"], dtype=float)},
                                                [str(d) for d in data["date_subjects"]]))
    n = len(table["velocity_r2"])
    # Session tables name each row; cross-session ones repeat the row's name once per column.
    rows = [s[-6:] for s in subjects] if kind == "sessions" else subjects[::n]
    return {"rows": rows, **table}


def stored_tables(upstream_dir) -> dict:
    """``{figure: {method: table}}`` for the :data:`FIGURES` folders found; a table holds ``rows`` (the
    stored row names, maybe garbled), ``files`` (relative paths), one array per score (sessions x
    [train, test] for Fig 4, n x n for Fig 5 and 6) and ``accuracy_curves`` (the stored per-bin accuracy, %). Fig 4 cohorts of one method (``NER_Chewie2015``,
    ``NER_Chewie2016``) are joined."""
    root = Path(upstream_dir)
    tables = {}
    for figure, (folder, pattern, kind) in FIGURES.items():
        for path in sorted((root / folder).glob(pattern)):
            if kind == "linear" and path.stem.endswith("_kNN"):
                continue
            table = _read_table(path, kind)
            method = method_of(path.stem)
            joined = tables.setdefault(figure, {}).get(method)
            if joined is None:
                tables[figure][method] = {**table, "files": [str(path.relative_to(root))]}
                continue
            joined["rows"] += table["rows"]
            joined["files"].append(str(path.relative_to(root)))
            for m in (*SCORES, "accuracy_curves"):
                joined[m] = np.concatenate([joined[m], table[m]])
    return tables


def _named(table, known=()) -> dict:
    names, _ = recover_names(table["rows"], known)
    return {"names": names if names is not None else table["rows"], **{m: table[m] for m in SCORES}}


def stored_fig4(upstream_dir) -> dict:
    """``{method: {"names": [yymmdd], score: (sessions x [train, test])}}`` of ``Fig4/NPZ_M1``."""
    return {m: _named(t) for m, t in stored_tables(upstream_dir).get("fig4_M1", {}).items()}


def stored_fig5(upstream_dir) -> dict:
    """``{method: {"names": [yymmdd], score: (n x n)}}`` of ``Fig5/*.npz`` (linear decoders)."""
    return {m: _named(t) for m, t in stored_tables(upstream_dir).get("fig5", {}).items()}


def stored_anchor(upstream_dir) -> np.ndarray | None:
    """The Fig 3 anchor as ``(8 directions, 40 bins, 3 dims)`` (stored as bins x dims x directions)."""
    path = Path(upstream_dir) / "Fig3" / "anchor_emb_Chewie_20161014.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return np.asarray(data["anchor_emb"]).transpose(2, 0, 1)
