"""Result tables decoded from the embedding caches: what the figures plot.

``results/decoding_<area>.npz`` (one per area) holds ``methods`` (M), ``sessions`` (S),
``trial_length`` (S) and, for each decoder prefix ``""`` (linear) and ``"knn_"``,
``<prefix>{train,test}_{velocity_r2,position_r2,peak_accuracy}`` (M x S) and
``<prefix>{train,test}_accuracy_per_bin`` (M x S x longest trial, NaN-padded).

``results/cross_session_<subject>.npz`` (one per subject) holds ``methods`` (M), ``units`` (U names
``<session>_<area>``, areas in order then sessions), ``sessions`` and ``areas`` (U each) and
``<decoder>_{velocity_r2,position_r2,peak_accuracy}`` (M x U x U) and ``<decoder>_accuracy_per_bin``
(M x U x U x trial length) for decoder ``linear`` and ``knn``: entry [m, i, j] is method m's decoder
fitted on unit i's training trials, scored on unit j's test trials aligned onto unit i (the corrected
protocol of :mod:`ner.evaluation.cross_session`). Across areas of one subject this is Fig 6's
M1 <-> PMd matrix.

Every cell is NaN where its method has no cache of that unit or decoding failed. A table whose input
caches are unchanged is kept unless ``force``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices
from ner.evaluation.decoding import SCORES, decode_session
from ner.workflow.store import cross_session_path, digest, matches, publish, read_npz, stored_provenance, table_path

__all__ = ["DECODERS", "build_tables", "decoding_tables", "cross_session_tables", "subject_of"]

DECODERS = ("linear", "knn")
FIELDS = (*SCORES, "accuracy_per_bin")  # what each table cell holds
_PREFIX = {"linear": "", "knn": "knn_"}


def subject_of(session: str) -> str:
    """The monkey a session name belongs to (``Chewie_20161007`` -> ``Chewie``)."""
    return session.split("_", 1)[0]


def _published_caches(out_dir: Path) -> list[tuple[dict, Path, str]]:
    """(provenance, path, provenance string) of every readable embedding cache."""
    found = []
    for path in sorted((out_dir / "embeddings").glob("*/*.npz")):
        stored = stored_provenance(path)
        if stored is not None:  # unreadable: its unit will be recomputed by the next run
            found.append((json.loads(stored), path, stored))
    return found


def _request(kind: str, caches) -> dict:
    inputs = {f"{p['method']}/{p['session']}_{p['area']}": digest(stored) for p, _, stored in caches}
    return {"table": kind, "protocol": "corrected", "decoders": list(DECODERS), "inputs": dict(sorted(inputs.items()))}


def _stale_groups(out_dir: Path, group_of, selected, path_of, kind: str, force: bool, summary: dict):
    """(group, its caches, table path, request) for every table of ``kind`` that must be (re)built.

    Caches are grouped by ``group_of(provenance)``; groups not in ``selected`` (when given) and tables whose
    inputs are unchanged (unless ``force``) are passed over, the latter recorded as skipped.
    """
    groups: dict = {}
    for entry in _published_caches(out_dir):
        groups.setdefault(group_of(entry[0]), []).append(entry)
    for group, caches in sorted(groups.items()):
        if selected is not None and group not in selected:
            continue
        target, request = path_of(out_dir, group), _request(kind, caches)
        if not force and matches(target, request):
            summary["skipped"].append(str(target))
            continue
        yield group, caches, target, request


def _previous(target: Path, request: dict) -> dict | None:
    """The table now at ``target`` and its input hashes, when it was made the same way, to reuse its cells."""
    stored = stored_provenance(target)
    if stored is None:
        return None
    provenance = json.loads(stored)
    if any(provenance.get(key) != request[key] for key in ("table", "protocol", "decoders")):
        return None
    return {"table": read_npz(target), "inputs": provenance["inputs"], "new": request["inputs"]}


def _same_input(previous: dict, key: str) -> bool:
    return key in previous["inputs"] and previous["inputs"][key] == previous["new"][key]


def _old_units(previous: dict, method: str) -> list:
    """(area, session) of the units ``method`` had cached when the previous table was made."""
    prefix = f"{method}/"
    return sorted(tuple(reversed(key[len(prefix):].rsplit("_", 1))) for key in previous["inputs"] if key.startswith(prefix))


def _reuse(previous, key, table, method, session, cell) -> bool:
    """Copy a decoding-table cell whose input cache is unchanged from the previous table."""
    if previous is None or not _same_input(previous, key):
        return False
    old = previous["table"]
    where = (old["methods"].tolist().index(method), old["sessions"].tolist().index(session))
    for name in table:
        width = min(table[name].shape[-1], old[name].shape[-1]) if table[name].ndim == 3 else None
        if width is None:
            table[name][cell] = old[name][where]
        else:
            table[name][cell][:width] = old[name][where][:width]
    return True


def decoding_tables(out_dir, areas: Iterable[str] | None = None, force: bool = False, summary=None) -> dict:
    """Decode every cached embedding of each area on its own session (linear and kNN decoders)."""
    out_dir = Path(out_dir)
    summary = summary if summary is not None else {"computed": [], "skipped": [], "failed": {}}
    for area, caches, target, request in _stale_groups(out_dir, lambda p: p["area"], areas, table_path,
                                                       "decoding", force, summary):
        methods = sorted({p["method"] for p, _, _ in caches})
        sessions = sorted({p["session"] for p, _, _ in caches})
        loaded = {(p["method"], p["session"]): read_npz(path) for p, path, _ in caches}
        lengths = {session: int(data["trial_length"]) for (_, session), data in loaded.items()}
        previous = _previous(target, request)
        longest = max(lengths.values())
        table = {}
        for prefix in _PREFIX.values():
            for split in ("train", "test"):
                for metric in FIELDS:
                    shape = (len(methods), len(sessions)) + ((longest,) if metric == "accuracy_per_bin" else ())
                    table[f"{prefix}{split}_{metric}"] = np.full(shape, np.nan)
        for (method, session), data in loaded.items():
            i, j = methods.index(method), sessions.index(session)
            if _reuse(previous, f"{method}/{session}_{area}", table, method, session, (i, j)):
                continue
            for decoder, prefix in _PREFIX.items():
                try:
                    scores = decode_session(data["train_embedding"], data["train_labels"], data["test_embedding"],
                                            data["test_labels"], lengths[session], method=decoder)
                except ValueError as error:
                    summary["failed"][f"{decoder} decoding {method}/{session}_{area}"] = str(error)
                    continue
                for split in ("train", "test"):
                    for metric in FIELDS:
                        value = scores[f"{split}_{metric}"]
                        cell = table[f"{prefix}{split}_{metric}"]
                        if metric == "accuracy_per_bin":
                            cell[i, j, :len(value)] = value
                        else:
                            cell[i, j] = value
        publish(target, {"methods": np.array(methods), "sessions": np.array(sessions),
                          "trial_length": np.array([lengths[session] for session in sessions]), **table},
                 request, area=area)
        summary["computed"].append(str(target))
    return summary


def cross_session_tables(out_dir, subjects: Iterable[str] | None = None, force: bool = False,
                         summary=None) -> dict:
    """Align and decode every pair of cached units of each subject, per method (linear and kNN)."""
    out_dir = Path(out_dir)
    summary = summary if summary is not None else {"computed": [], "skipped": [], "failed": {}}
    for subject, caches, target, request in _stale_groups(out_dir, lambda p: subject_of(p["session"]), subjects,
                                                          cross_session_path, "cross_session", force, summary):
        units = sorted({(p["area"], p["session"]) for p, _, _ in caches})
        methods = sorted({p["method"] for p, _, _ in caches})
        loaded = {(p["method"], p["area"], p["session"]): read_npz(path) for p, path, _ in caches}
        lengths = {int(data["trial_length"]) for data in loaded.values()}
        if len(lengths) != 1:
            summary["failed"][f"cross-session {subject}"] = f"sessions of {subject} differ in trial length {sorted(lengths)}"
            continue
        trial_length = lengths.pop()
        n = len(units)
        table = {}
        for decoder in DECODERS:
            for metric in FIELDS:
                shape = (len(methods), n, n) + ((trial_length,) if metric == "accuracy_per_bin" else ())
                table[f"{decoder}_{metric}"] = np.full(shape, np.nan)
        previous = _previous(target, request)
        for m, method in enumerate(methods):
            present = [u for u in units if (method, *u) in loaded]
            if previous is not None and all(_same_input(previous, f"{method}/{s}_{a}") for a, s in present) \
                    and _old_units(previous, method) == present:
                old, old_units = previous["table"], previous["table"]["units"].tolist()
                row = old["methods"].tolist().index(method)
                where = [old_units.index(f"{s}_{a}") for a, s in present]
                index = [units.index(u) for u in present]
                for key in table:
                    table[key][m][np.ix_(index, index)] = old[key][row][np.ix_(where, where)]
                continue
            sessions = {u: SplitEmbedding(*(loaded[(method, *u)][key] for key in
                                     ("train_embedding", "train_labels", "test_embedding", "test_labels")))
                        for u in present}
            index = [units.index(u) for u in present]
            for decoder in DECODERS:
                try:
                    result = cross_session_matrices(sessions, trial_length, method=decoder)
                except ValueError as error:
                    summary["failed"][f"{decoder} cross-session {method}/{subject}"] = str(error)
                    continue
                for metric in FIELDS:
                    table[f"{decoder}_{metric}"][m][np.ix_(index, index)] = result[metric]
        publish(target, {"methods": np.array(methods),
                          "units": np.array([f"{session}_{area}" for area, session in units]),
                          "sessions": np.array([session for _, session in units]),
                          "areas": np.array([area for area, _ in units]),
                          "trial_length": np.int64(trial_length), **table},
                 request, subject=subject)
        summary["computed"].append(str(target))
    return summary


def build_tables(out_dir="data_NER", areas: Iterable[str] | None = None, force: bool = False) -> dict:
    """Every decoding and cross-session table of ``out_dir`` (only those of ``areas`` when given).

    Returns ``computed`` and ``skipped`` (table paths) and ``failed`` ({what: message}).
    """
    summary = {"computed": [], "skipped": [], "failed": {}}
    decoding_tables(out_dir, areas, force, summary)
    subjects = None
    if areas is not None:
        subjects = {subject_of(p["session"]) for p, _, _ in _published_caches(Path(out_dir)) if p["area"] in areas}
    cross_session_tables(out_dir, subjects, force, summary)
    return summary
