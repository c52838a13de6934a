"""The cache store: the ``data_NER/`` layout, its ``.npz`` files and their provenance.

Layout of a cache folder::

    embeddings/<method>/seed<k>/<session>_<area>.npz   a method fitted with seed k on the training trials of one area
    results/decoding_<area>.npz                decoding scores of every cached embedding of that area
    results/cross_session_<subject>.npz        cross-session (and cross-area) matrices of one subject
    results/<name>.npz                         what a figure shows that is computed (ner.workflow.figure_data)
    mc_maze/<method>/<selection>.npz           MC_Maze runs (ner.workflow.maze)

Every file holds a ``provenance`` JSON string saying how it was made.
Files are published by an atomic rename, so a killed writer leaves none half-written; its temporary
``.<name>.<pid>.<random>.part`` file is removed by the next run once that pid is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ner.atomic import atomic_write

__all__ = ["Unit", "REPOSITORY", "CACHE_DIR_ENV", "cache_dir", "cache_path", "table_path", "cross_session_path", "result_path",
           "read_npz", "write_npz", "publish", "digest", "stored_provenance", "matches", "jsonable", "settings_of", "versions",
           "remove_stale_parts"]

CACHE_DIR_ENV = "NER_CACHE_DIR"
# Parameters that change what is printed, not what is computed: never a reason to retrain.
UNMATCHED_PARAMETERS = ("verbose",)
# Parameters added after caches were made, each with the value that computes what came before: a cache
# that predates one matches a request leaving it at that value. (NER's multisession_positives: a
# single-session fit never reads it; restarts: one fit is what a fit was.)
ADDED_PARAMETERS = {"multisession_positives": "across", "restarts": 1}
_PART = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.part$")
# The checkout ner is installed from (pip install -e .): data_NER/, notebooks/ and figures/ live there.
REPOSITORY = Path(__file__).resolve().parents[2]


class Unit(NamedTuple):
    """One piece of work: fit ``method`` with ``seed`` on one area of one session."""

    session: str
    area: str
    method: str
    seed: int = 0

    def __str__(self):
        return f"{self.method}/seed{self.seed}/{self.session}_{self.area}"


def cache_dir() -> Path:
    """``$NER_CACHE_DIR``, else the repository's ``data_NER``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or REPOSITORY / "data_NER")


def cache_path(out_dir, unit: Unit) -> Path:
    """Where the embedding cache of ``unit`` lives."""
    return Path(out_dir) / "embeddings" / unit.method / f"seed{unit.seed}" / f"{unit.session}_{unit.area}.npz"


def table_path(out_dir, area: str) -> Path:
    """Where the decoding table of ``area`` lives."""
    return Path(out_dir) / "results" / f"decoding_{area}.npz"


def cross_session_path(out_dir, subject: str) -> Path:
    """Where the cross-session matrices of ``subject`` live."""
    return Path(out_dir) / "results" / f"cross_session_{subject}.npz"


def result_path(out_dir, name: str) -> Path:
    """Where the figure data ``name`` lives."""
    return Path(out_dir) / "results" / f"{name}.npz"


def write_npz(path: Path, arrays: Mapping) -> None:
    """Write an .npz next to ``path`` and rename it into place: readers see the whole file or none."""
    with atomic_write(path) as part, part.open("wb") as stream:
        np.savez_compressed(stream, **arrays)


def publish(target: Path, arrays: Mapping, request: Mapping, **extra) -> None:
    """Write a derived file (a table, figure data): ``arrays`` with ``request`` and ``extra`` as its
    provenance, plus the versions and the time it was made."""
    provenance = {**request, **extra, "versions": versions(),
                  "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_npz(target, {**arrays, "provenance": np.array(json.dumps(provenance, sort_keys=True))})


def digest(provenance: str) -> str:
    """The sha256 of a stored provenance string: what a derived file records of each input."""
    return hashlib.sha256(provenance.encode()).hexdigest()


def read_npz(path) -> dict:
    """All arrays of a cache or table file, with ``provenance`` parsed into a dict."""
    with np.load(path, allow_pickle=False) as contents:
        data = {key: contents[key] for key in contents.files}
    data["provenance"] = json.loads(str(data["provenance"]))
    return data


def stored_provenance(path: Path) -> str | None:
    """The provenance string of a published file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as contents:
            return str(contents["provenance"])
    except (OSError, KeyError, ValueError):
        return None


def matches(path: Path, expected: Mapping) -> bool:
    """Whether ``path`` is published and its provenance agrees with every field of ``expected``."""
    stored = stored_provenance(path)
    if stored is None:
        return False
    stored = json.loads(stored)
    return all(_same(key, stored.get(key), value) for key, value in expected.items())


def _same(key: str, stored, requested) -> bool:
    if key == "parameters" and isinstance(stored, dict) and isinstance(requested, dict):
        stored = {**{name: value for name, value in ADDED_PARAMETERS.items() if name in requested}, **stored}
    return stored == requested


def jsonable(value):
    """``value`` as JSON reads it back: tuples become lists, numpy values Python ones, dict keys text
    (a tuple key joined by "->"), sorted; anything else its repr.

    >>> jsonable({("a", "b"): (1, np.float64(0.5)), "n": np.arange(2)})
    {'a->b': [1, 0.5], 'n': [0, 1]}
    """
    if isinstance(value, dict):
        pairs = (("->".join(map(str, k)) if isinstance(k, tuple) else str(k), jsonable(v)) for k, v in value.items())
        return dict(sorted(pairs))
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)


def settings_of(estimator) -> dict:
    """An estimator's parameters as provenance stores them, less those that change only what is printed."""
    return jsonable({key: value for key, value in estimator.get_params(deep=False).items()
                     if key not in UNMATCHED_PARAMETERS})


def versions() -> dict:
    """Versions of the packages that shape a result (read from their metadata: nothing is imported)."""
    from importlib.metadata import version

    from ner import __version__

    return {"ner": __version__, "cebra": version("cebra"), "torch": version("torch"),
            "numpy": np.__version__, "sklearn": version("scikit-learn")}


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; leave the file, readers skip it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(out_dir: Path) -> list[Path]:
    """Delete temporary files left by killed writers (a live writer's pid keeps its file)."""
    removed = []
    for part in Path(out_dir).rglob(".*.part"):
        match = _PART.match(part.name)
        if match and not _pid_alive(int(match.group(1))):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed
