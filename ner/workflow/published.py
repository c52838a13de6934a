"""The paper's numbers beside ours, unit by unit: ``results/published.npz`` and ``ner compare --published``.

A unit is a (method, session, area) that the original's stored Fig 4 tables (``Fig4/NPZ_M1``,
``Fig4/NPZ_PMd_S1``) score and that our caches hold. For each one the table gives the six Fig 4 numbers
(``{train,test}_{velocity_r2,position_r2,peak_accuracy}``, accuracies as fractions) three ways:

* ``published``: the stored numbers (train is in-sample: the decoder is scored on the trials it was fitted on);
* ``paper``: our embedding scored with the paper's protocol (:func:`ner.evaluation.decode_session` with
  ``legacy=True``), per seed (``paper_per_seed``, U x K x 6) and the median over seeds;
* ``corrected``: our embedding with the corrected protocol, the same way.

:func:`group_medians` gives, per method and area and per method and monkey, the median of each and of the
paired differences ``paper - published``: the like-for-like comparison.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ner.evaluation.decoding import SCORES, decode_session
from ner.reference.layout import (
    STORED_SCALE,
    load_embeddings,
    load_pmd_embeddings,
    recover_names,
    stored_tables,
)
from ner.workflow.store import Unit, cache_path, digest, read_npz, stored_provenance

__all__ = ["COLUMNS", "OUR_METHOD", "build_published", "format_published", "group_medians", "published_request",
           "stored_units"]

COLUMNS = tuple(f"{split}_{score}" for split in ("train", "test") for score in SCORES)
# The original's method names -> ours; piVAE twice: the label-free encoder mean and the label-informed
# posterior mean (the paper's, which sees the labels of the bins it embeds), both in the pivae caches.
OUR_METHOD = {"NER": ("ner",), "Cebra": ("cebra3d",), "piVAE": ("pivae", "pivae_posterior"), "UMAP": ("umap",),
              "UMAP_label": ("umap_label",)}
_EMBEDDING = {"pivae_posterior": ("pivae", "posterior_")}  # method -> (its caches, key prefix of its embedding)
# Stored Fig 4 table -> monkey -> the area its rows are.
_AREAS = {"fig4_M1": {"Chewie": "M1", "Mihili": "M1"}, "fig4_PMd_S1": {"Chewie": "PMd", "Han": "S1"}}
_YEAR = "20"
_LABELS = {"published": "published", "paper": "ours paper", "corrected": "ours corr.", "paper - published": "ours-publ."}


def _row_names(figure: str, stored_method: str, table: dict, upstream: Path) -> list[str] | None:
    """The table's row dates; garbled rows are recovered from the sessions of the embeddings it was made from."""
    names, _ = recover_names(table["rows"], ())
    if names is not None:
        return names
    embeddings = load_embeddings(upstream)[0] if figure == "fig4_M1" else load_pmd_embeddings(upstream)[0]
    names, _ = recover_names(table["rows"], list(embeddings.get(stored_method, {})))
    return names


def stored_units(upstream) -> tuple[dict[Unit, np.ndarray], list[str]]:
    """``({Unit (seed 0): the six stored numbers}, stored tables whose rows could not be named)``."""
    upstream = Path(upstream)
    units, unnamed = {}, []
    tables = stored_tables(upstream)
    for figure, areas in _AREAS.items():
        for stored_method, table in tables.get(figure, {}).items():
            name, subject = stored_method.rsplit("_", 1)
            if name not in OUR_METHOD or subject not in areas:
                continue
            rows = _row_names(figure, stored_method, table, upstream)
            if rows is None:
                unnamed.append(f"{figure} {stored_method}")
                continue
            for row, date in enumerate(rows):
                values = np.array([table[score][row, col] / STORED_SCALE[score] for col in (0, 1) for score in SCORES])
                for method in OUR_METHOD[name]:
                    units[Unit(f"{subject}_{_YEAR}{date}", areas[subject], method)] = values
    return units, unnamed


def _our_caches(out_dir: Path, unit: Unit) -> dict[int, Path]:
    """{seed: cache} of ``unit`` (any seed) in ``out_dir``."""
    method, _ = _EMBEDDING.get(unit.method, (unit.method, ""))
    caches = {}
    for folder in sorted((out_dir / "embeddings" / method).glob("seed*")):
        seed = int(folder.name.removeprefix("seed"))
        path = cache_path(out_dir, unit._replace(method=method, seed=seed))
        if path.exists():
            caches[seed] = path
    return caches


def published_request(out_dir, upstream) -> dict:
    """What the table is made from: the digests of our caches and the stored tables' files (name, size)."""
    out_dir, upstream = Path(out_dir), Path(upstream)
    units, _ = stored_units(upstream)
    inputs = {str(unit._replace(seed=seed)): digest(stored_provenance(path) or "")
              for unit in units for seed, path in _our_caches(out_dir, unit).items()}
    files = {str(p.relative_to(upstream)): p.stat().st_size for p in sorted((upstream / "Fig4").rglob("*.npz"))}
    return {"result": "published", "inputs": dict(sorted(inputs.items())), "stored_files": files}


def build_published(out_dir, upstream) -> dict:
    """The arrays of ``results/published.npz`` (see the module's docstring): ``methods``, ``sessions``,
    ``areas`` (U each), ``seeds`` (K), ``columns`` (6), ``published`` (U x 6), ``{paper,corrected}_per_seed``
    (U x K x 6, NaN where a seed has no cache) and their medians over seeds. Units without a cache are left
    out; a folder where no unit has one is a ValueError."""
    out_dir = Path(out_dir)
    stored, _ = stored_units(upstream)
    found = {unit: caches for unit in sorted(stored) if (caches := _our_caches(out_dir, unit))}
    if not found:
        raise ValueError(f"{out_dir} holds no cache of a unit the stored Fig 4 tables score "
                         f"({len(stored)} units): run `ner reproduce` first")
    seeds = sorted({seed for caches in found.values() for seed in caches})
    per_seed = {protocol: np.full((len(found), len(seeds), len(COLUMNS)), np.nan) for protocol in ("paper", "corrected")}
    for u, (unit, caches) in enumerate(found.items()):
        _, prefix = _EMBEDDING.get(unit.method, (unit.method, ""))
        for seed, path in caches.items():
            data = read_npz(path)
            if f"train_{prefix}embedding" not in data:
                continue  # a cache made before piVAE's caches held the posterior: NaN
            for protocol, legacy in (("paper", True), ("corrected", False)):
                scores = decode_session(data[f"train_{prefix}embedding"], data["train_labels"],
                                        data[f"test_{prefix}embedding"], data["test_labels"],
                                        int(data["trial_length"]), legacy=legacy)
                per_seed[protocol][u, seeds.index(seed)] = [scores[column] for column in COLUMNS]
    arrays = {"methods": np.array([u.method for u in found]), "sessions": np.array([u.session for u in found]),
              "areas": np.array([u.area for u in found]), "seeds": np.array(seeds), "columns": np.array(COLUMNS),
              "published": np.stack([stored[unit] for unit in found])}
    for protocol, values in per_seed.items():
        arrays[f"{protocol}_per_seed"] = values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a unit no seed has: NaN
            arrays[protocol] = np.nanmedian(values, axis=1)
    return arrays


def group_medians(table) -> list[dict]:
    """Per method and area, per method and monkey, and per method over all units: the group, its unit count,
    and the medians of ``published``, ``paper``, ``corrected`` and ``paper - published`` (paired), each
    {column: value}."""
    methods, areas = np.asarray(table["methods"]), np.asarray(table["areas"])
    subjects = np.array([s.split("_", 1)[0] for s in np.asarray(table["sessions"])])
    columns = [str(c) for c in table["columns"]]
    rows = []
    for method in dict.fromkeys(methods.tolist()):
        groups = [("all", methods == method)]
        groups += [(area, (methods == method) & (areas == area)) for area in dict.fromkeys(areas[methods == method])]
        groups += [(s, (methods == method) & (subjects == s)) for s in dict.fromkeys(subjects[methods == method])]
        for group, where in groups:
            values = {name: table[name][where] for name in ("published", "paper", "corrected")}
            values["paper - published"] = values["paper"] - values["published"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a group no cache scores: NaN
                medians = {name: dict(zip(columns, np.nanmedian(v, axis=0).tolist())) for name, v in values.items()}
            rows.append({"method": str(method), "group": str(group), "units": int(where.sum()), **medians})
    return rows


def format_published(table) -> str:
    """The per-unit table and the group medians as text."""
    columns = [str(c) for c in table["columns"]]
    short = [c.replace("velocity_r2", "vel").replace("position_r2", "pos").replace("peak_accuracy", "acc")
             for c in columns]
    header = f"{'method':16s} {'unit':20s} {'':10s}" + "".join(f"{c:>10s}" for c in short)
    lines = ["Fig 4 numbers: published (train in-sample), ours with the paper's protocol, ours corrected "
             f"(median over seeds {', '.join(str(s) for s in table['seeds'])})", header]
    for u, method in enumerate(table["methods"]):
        unit = f"{table['sessions'][u]} {table['areas'][u]}"
        for name in ("published", "paper", "corrected"):
            values = "".join(f"{v:10.3f}" for v in table[name][u])
            lines.append(f"{method if name == 'published' else '':16s} {unit if name == 'published' else '':20s} "
                         f"{_LABELS[name]:10s}{values}")
    lines += ["", "medians per group (paper - published: paired, unit by unit)", header.replace("unit", "group")]
    for row in group_medians(table):
        for name in ("published", "paper", "corrected", "paper - published"):
            values = "".join(f"{row[name][c]:10.3f}" for c in columns)
            first = name == "published"
            lines.append(f"{row['method'] if first else '':16s} "
                         f"{(row['group'] + ' (' + str(row['units']) + ')') if first else '':20s} {_LABELS[name]:10s}{values}")
    return "\n".join(lines)
