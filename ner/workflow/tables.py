"""Result tables decoded from the embedding caches: what the figures plot.

``results/decoding_<area>.npz`` (one per area) holds ``methods`` (M), ``sessions`` (S), ``seeds`` (K),
``trial_length`` (S) and, for each decoder prefix ``""`` (linear) and ``"knn_"``,
``<prefix>{train,test}_{velocity_r2,position_r2,peak_accuracy}_per_seed`` (M x S x K) and
``<prefix>{train,test}_accuracy_per_bin_per_seed`` (M x S x K x longest trial, NaN-padded).

``results/cross_session_<subject>.npz`` (one per subject) holds ``methods`` (M), ``seeds`` (K), ``units``
(U names ``<session>_<area>``, areas in order then sessions), ``sessions`` and ``areas`` (U each) and
``<decoder>_{velocity_r2,position_r2,peak_accuracy}_per_seed`` (M x K x U x U) and
``<decoder>_accuracy_per_bin_per_seed`` (M x K x U x U x trial length) for decoder ``linear`` and ``knn``:
entry [m, k, i, j] is method m's decoder (seed k's embedding) fitted on unit i's training trials, scored
on unit j's test trials aligned onto unit i (the corrected protocol of
:mod:`ner.evaluation.cross_session`). Across areas of one subject this is Fig 6's M1 <-> PMd matrix.

Every ``<name>_per_seed`` array comes with ``<name>``, its median over the seeds (the seed axis dropped):
what the figures plot. A cell is NaN where its method has no cache of that unit and seed or decoding
failed; a median is NaN only where no seed has the cell. A table whose input caches are unchanged is kept
unless ``force``; cells of unchanged caches are copied from the previous table.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices
from ner.evaluation.decoding import SCORES, decode_session
from ner.workflow.store import (
    Unit,
    cross_session_path,
    digest,
    matches,
    publish,
    read_npz,
    stored_provenance,
    table_path,
)

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
    for path in sorted((out_dir / "embeddings").glob("*/seed*/*.npz")):
        stored = stored_provenance(path)
        if stored is not None:  # unreadable: its unit will be recomputed by the next run
            found.append((json.loads(stored), path, stored))
    return found


def _key(provenance: dict) -> str:
    return str(Unit(provenance["session"], provenance["area"], provenance["method"], provenance["seed"]))


def _request(kind: str, caches) -> dict:
    inputs = {_key(p): digest(stored) for p, _, stored in caches}
    return {"table": kind, "protocol": "corrected", "decoders": list(DECODERS), "per_seed": True,
            "inputs": dict(sorted(inputs.items()))}


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
    if any(provenance.get(key) != request[key] for key in ("table", "protocol", "decoders", "per_seed")):
        return None
    return {"table": read_npz(target), "inputs": provenance["inputs"], "new": request["inputs"]}


def _same_input(previous: dict, key: str) -> bool:
    return key in previous["inputs"] and previous["inputs"][key] == previous["new"][key]


def _index(table: dict, name: str, value) -> int:
    return table[name].tolist().index(value)


def _with_medians(per_seed: dict, seed_axis: int) -> dict:
    """Each per-seed array under ``<name>_per_seed`` and its median over seeds (NaN where no seed has it)
    under ``<name>``."""
    arrays = {}
    for name, values in per_seed.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: units no seed has
            arrays[name] = np.nanmedian(values, axis=seed_axis)
        arrays[f"{name}_per_seed"] = values
    return arrays


def decoding_tables(out_dir, areas: Iterable[str] | None = None, force: bool = False, summary=None) -> dict:
    """Decode every cached embedding of each area on its own session (linear and kNN decoders)."""
    out_dir = Path(out_dir)
    summary = summary if summary is not None else {"computed": [], "skipped": [], "failed": {}}
    for area, caches, target, request in _stale_groups(out_dir, lambda p: p["area"], areas, table_path,
                                                       "decoding", force, summary):
        methods = sorted({p["method"] for p, _, _ in caches})
        sessions = sorted({p["session"] for p, _, _ in caches})
        seeds = sorted({p["seed"] for p, _, _ in caches})
        loaded = {(p["method"], p["session"], p["seed"]): (_key(p), path) for p, path, _ in caches}
        lengths = {p["session"]: None for p, _, _ in caches}
        previous = _previous(target, request)
        table = {}
        for (method, session, seed), (key, path) in loaded.items():
            data = read_npz(path)
            lengths[session] = int(data["trial_length"])
            table.setdefault((method, session, seed), {})
            if previous is not None and _same_input(previous, key):
                old = previous["table"]
                where = (_index(old, "methods", method), _index(old, "sessions", session), _index(old, "seeds", seed))
                table[(method, session, seed)] = {name[:-len("_per_seed")]: old[name][where]
                                                  for name in old if name.endswith("_per_seed")}
                continue
            for decoder, prefix in _PREFIX.items():
                try:
                    scores = decode_session(data["train_embedding"], data["train_labels"], data["test_embedding"],
                                            data["test_labels"], lengths[session], method=decoder)
                except ValueError as error:
                    summary["failed"][f"{decoder} decoding {key}"] = str(error)
                    continue
                table[(method, session, seed)].update(
                    {f"{prefix}{split}_{metric}": scores[f"{split}_{metric}"] for split in ("train", "test")
                     for metric in FIELDS})
        longest = max(lengths.values())
        per_seed = {}
        for prefix in _PREFIX.values():
            for split in ("train", "test"):
                for metric in FIELDS:
                    shape = (len(methods), len(sessions), len(seeds)) + (
                        (longest,) if metric == "accuracy_per_bin" else ())
                    per_seed[f"{prefix}{split}_{metric}"] = np.full(shape, np.nan)
        for (method, session, seed), cells in table.items():
            where = (methods.index(method), sessions.index(session), seeds.index(seed))
            for name, value in cells.items():
                value = np.asarray(value, dtype=float)
                if value.ndim:  # per-bin accuracy: as long as its session's trials, NaN-padded
                    value = value[:longest]
                    per_seed[name][where][:len(value)] = value
                else:
                    per_seed[name][where] = value
        publish(target, {"methods": np.array(methods), "sessions": np.array(sessions), "seeds": np.array(seeds),
                          "trial_length": np.array([lengths[session] for session in sessions]),
                          **_with_medians(per_seed, seed_axis=2)},
                 request, area=area)
        summary["computed"].append(str(target))
    return summary


def cross_session_tables(out_dir, subjects: Iterable[str] | None = None, force: bool = False,
                         summary=None) -> dict:
    """Align and decode every pair of cached units of each subject, per method and seed (linear and kNN)."""
    out_dir = Path(out_dir)
    summary = summary if summary is not None else {"computed": [], "skipped": [], "failed": {}}
    for subject, caches, target, request in _stale_groups(out_dir, lambda p: subject_of(p["session"]), subjects,
                                                          cross_session_path, "cross_session", force, summary):
        units = sorted({(p["area"], p["session"]) for p, _, _ in caches})
        methods = sorted({p["method"] for p, _, _ in caches})
        seeds = sorted({p["seed"] for p, _, _ in caches})
        found = {(p["method"], p["seed"], p["area"], p["session"]): (_key(p), path) for p, path, _ in caches}
        lengths = {int(read_npz(path)["trial_length"]) for _, path in found.values()}
        if len(lengths) != 1:
            summary["failed"][f"cross-session {subject}"] = f"sessions of {subject} differ in trial length {sorted(lengths)}"
            continue
        trial_length = lengths.pop()
        n = len(units)
        per_seed = {}
        for decoder in DECODERS:
            for metric in FIELDS:
                shape = (len(methods), len(seeds), n, n) + ((trial_length,) if metric == "accuracy_per_bin" else ())
                per_seed[f"{decoder}_{metric}"] = np.full(shape, np.nan)
        previous = _previous(target, request)
        for m, method in enumerate(methods):
            for k, seed in enumerate(seeds):
                present = [u for u in units if (method, seed, *u) in found]
                if not present:  # e.g. a method without randomness, fitted under the first seed only
                    continue
                index = [units.index(u) for u in present]
                keys = [found[(method, seed, *u)][0] for u in present]
                if previous is not None and all(_same_input(previous, key) for key in keys) \
                        and _old_keys(previous, method, seed) == sorted(keys):
                    old, old_units = previous["table"], previous["table"]["units"].tolist()
                    row = (_index(old, "methods", method), _index(old, "seeds", seed))
                    where = [old_units.index(f"{s}_{a}") for a, s in present]
                    for name in per_seed:
                        per_seed[name][m, k][np.ix_(index, index)] = old[f"{name}_per_seed"][row][np.ix_(where, where)]
                    continue
                sessions = {}
                for u in present:
                    data = read_npz(found[(method, seed, *u)][1])
                    sessions[u] = SplitEmbedding(*(data[key] for key in
                                                   ("train_embedding", "train_labels", "test_embedding", "test_labels")))
                for decoder in DECODERS:
                    try:
                        result = cross_session_matrices(sessions, trial_length, method=decoder)
                    except ValueError as error:
                        summary["failed"][f"{decoder} cross-session {method}/seed{seed}/{subject}"] = str(error)
                        continue
                    for metric in FIELDS:
                        per_seed[f"{decoder}_{metric}"][m, k][np.ix_(index, index)] = result[metric]
        publish(target, {"methods": np.array(methods), "seeds": np.array(seeds),
                          "units": np.array([f"{session}_{area}" for area, session in units]),
                          "sessions": np.array([session for _, session in units]),
                          "areas": np.array([area for area, _ in units]),
                          "trial_length": np.int64(trial_length), **_with_medians(per_seed, seed_axis=1)},
                 request, subject=subject)
        summary["computed"].append(str(target))
    return summary


def _old_keys(previous: dict, method: str, seed) -> list[str]:
    """The input keys of ``method`` with ``seed`` when the previous table was made."""
    prefix = f"{method}/seed{seed}/"
    return sorted(key for key in previous["inputs"] if key.startswith(prefix))


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
