"""The ``data_NER/`` layout and its files: compressed ``.npz`` with a ``provenance`` JSON string.

Layout of a cache folder::

    embeddings/<method>/<session>_<area>.npz   a method fitted on the training trials of one area
    results/decoding_<area>.npz                decoding scores of every cached embedding of that area
    results/cross_session_<subject>.npz        cross-session (and cross-area) matrices of one subject

Files are published by an atomic rename, so a killed writer leaves none half-written; its temporary
``.<name>.<pid>.<random>.part`` file is removed by the next run once that pid is gone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ner.atomic import atomic_write

__all__ = ["cache_path", "table_path", "cross_session_path", "read_npz", "write_npz", "stored_provenance",
           "matches", "jsonable", "versions", "remove_stale_parts"]

_PART = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.part$")


def cache_path(out_dir, unit) -> Path:
    """Where the embedding cache of ``unit`` (anything with ``session``, ``area``, ``method``) lives."""
    return Path(out_dir) / "embeddings" / unit.method / f"{unit.session}_{unit.area}.npz"


def table_path(out_dir, area: str) -> Path:
    """Where the decoding table of ``area`` lives."""
    return Path(out_dir) / "results" / f"decoding_{area}.npz"


def cross_session_path(out_dir, subject: str) -> Path:
    """Where the cross-session matrices of ``subject`` live."""
    return Path(out_dir) / "results" / f"cross_session_{subject}.npz"


def write_npz(path: Path, arrays: Mapping) -> None:
    """Write an .npz next to ``path`` and rename it into place: readers see the whole file or none."""
    with atomic_write(path) as part, part.open("wb") as stream:
        np.savez_compressed(stream, **arrays)


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
    return all(stored.get(key) == value for key, value in expected.items())


def jsonable(value):
    """``value`` as a stored provenance reads back: tuples become lists, unknown objects their repr."""
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def versions() -> dict:
    """Versions of the packages that shape a result."""
    import cebra
    import sklearn
    import torch

    import ner

    return {"ner": ner.__version__, "cebra": cebra.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__}


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
