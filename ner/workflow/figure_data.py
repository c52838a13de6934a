"""What a figure shows that is computed, computed once into ``data_NER/results/``: the notebooks only read.

=======================================  =====================================================================
``results/<name>.npz``                   holds
=======================================  =====================================================================
``decoded_Chewie_20161007_M1``           Fig 1: the test velocity each method's linear decoder reads out
``rank_agreement_Chewie_20161007_M1``    Fig 2: label vs latent distances of NER, Spearman rho per reference bin
``convergence``                          Fig 12: test scores of the convergence runs' snapshots, and of the
                                         main caches of the same units
``protocols_Chewie_M1``                  Fig 16: cross-session matrices under the paper's and the corrected
                                         protocol, NER and CEBRA 3-D, on the Chewie M1 sessions of Fig 3
``parity``                               Fig 16: the parity report (:mod:`ner.reference.parity`) on the
                                         original authors' latents; made only where their folder is given
``published``                            Fig 16 and ``ner compare --published``: the stored Fig 4 numbers
                                         beside ours, unit by unit (:mod:`ner.workflow.published`); made
                                         only where the original's folder is given
=======================================  =====================================================================

Each file records in its provenance a digest of every input it was made from and is rebuilt only when
one of those changed (or with ``force``). Inputs that are missing leave its file unmade, not half made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices
from ner.evaluation.decoding import SCORES, decode_session
from ner.reference.layout import EMBEDDING_DIR, FIGURES, PMD_DIR
from ner.reference.legacy import legacy_cross_session
from ner.reference.parity import compare
from ner.workflow.published import build_published, published_request
from ner.workflow.store import (
    Unit,
    cache_path,
    digest,
    jsonable,
    matches,
    publish,
    read_npz,
    result_path,
    stored_provenance,
)

__all__ = ["FIGURE_UNIT", "PROTOCOL_SESSIONS", "build_figure_data"]

FIGURE_UNIT = ("Chewie_20161007", "M1")  # the session Figs 1 and 2 show
PROTOCOL_SESSIONS = ("Chewie_20150629", "Chewie_20150630", "Chewie_20160929", "Chewie_20161007")
_PAIR = ("ner", "cebra3d")


def _inputs(paths: dict[str, Path]) -> dict[str, str] | None:
    """{name: digest of its provenance} of the input files, or None when one is missing."""
    stored = {name: stored_provenance(path) for name, path in paths.items()}
    if any(value is None for value in stored.values()):
        return None
    return {name: digest(value) for name, value in sorted(stored.items())}


def _decoded(caches: dict) -> dict:
    arrays = {"methods": np.array(list(caches))}
    predicted = []
    for cache in caches.values():
        predicted.append(_decode_cache(cache)["test_predicted_velocity"])
    arrays.update(test_predicted_velocity=np.stack(predicted),
                  test_labels=next(iter(caches.values()))["test_labels"])
    return arrays


def _rank_agreement(caches: dict) -> dict:
    """Label distance (the loss's own) against latent distance from 200 reference bins to 400 others."""
    import torch
    from scipy.stats import spearmanr

    from ner.model.loss import LabelDistance

    cache = caches["ner"]
    labels, latent = cache["train_labels"], cache["train_embedding"]
    rng = np.random.default_rng(0)
    references = rng.choice(len(latent), 200, replace=False)
    others = rng.choice(len(latent), 400, replace=False)
    label_gap = LabelDistance()(torch.from_numpy(labels[references]).double(),
                                torch.from_numpy(labels[others]).double()).numpy()
    latent_gap = np.linalg.norm(latent[references, None] - latent[None, others], axis=-1)
    rho = np.array([spearmanr(a, b)[0] for a, b in zip(label_gap, latent_gap)])
    return {"label_distance": label_gap, "latent_distance": latent_gap,
            "spearman_rho": rho}


def _protocols(caches: dict) -> dict:
    """Per method and protocol (paper, corrected): the linear cross-session matrices of the sessions, and
    ``<score>_low`` / ``<score>_high``: the paper's rotation pick is rounding noise, so each of its entries
    spans the scores of every rotation the original's rule can take (:func:`legacy_cross_session`); the
    corrected entries are single numbers (low = high)."""
    arrays = {"methods": np.array(_PAIR), "protocols": np.array(["paper", "corrected"]),
              "sessions": np.array(PROTOCOL_SESSIONS)}
    shape = (len(_PAIR), 2, len(PROTOCOL_SESSIONS), len(PROTOCOL_SESSIONS))
    matrices = {f"{m}{end}": np.full(shape, np.nan) for m in SCORES for end in ("", "_low", "_high")}
    for i, method in enumerate(_PAIR):
        splits = {s: SplitEmbedding(*(caches[f"{method}/{s}"][key] for key in
                                      ("train_embedding", "train_labels", "test_embedding", "test_labels")))
                  for s in PROTOCOL_SESSIONS}
        trial_length = int(caches[f"{method}/{PROTOCOL_SESSIONS[0]}"]["trial_length"])
        legacy = legacy_cross_session(splits, trial_length)
        corrected = cross_session_matrices(splits, trial_length)
        for a, train in enumerate(PROTOCOL_SESSIONS):
            for b, test in enumerate(PROTOCOL_SESSIONS):
                if a == b:
                    picked = low = high = np.asarray(legacy["diagonal"][train])
                else:
                    pair = legacy["pairs"][(train, test)]
                    reachable = pair["candidates"][pair["reachable"]]
                    picked, low, high = pair["candidates"][pair["pick"]], reachable.min(0), reachable.max(0)
                for k, m in enumerate(SCORES):
                    for end, value in (("", picked), ("_low", low), ("_high", high)):
                        matrices[f"{m}{end}"][i, 0, a, b] = value[k]
                    for end in ("", "_low", "_high"):
                        matrices[f"{m}{end}"][i, 1, a, b] = corrected[m][a, b]
    arrays.update(matrices)
    return arrays


def _convergence_inputs(out_dir: Path) -> dict[str, Path]:
    runs = sorted((out_dir / "convergence" / "embeddings").glob("*/seed*/*.npz"))
    inputs = {}
    for path in runs:  # each run, and its unit's main cache for the comparison at its iteration count
        session, area = path.stem.rsplit("_", 1)
        unit = Unit(session, area, path.parent.parent.name, int(path.parent.name.removeprefix("seed")))
        inputs[f"convergence/{unit}"] = path
        inputs[str(unit)] = cache_path(out_dir, unit)
    return inputs


def _convergence(caches: dict) -> dict:
    """Test scores of each convergence run at each snapshot, and of its unit's main cache."""
    runs = {key[len("convergence/"):]: cache for key, cache in caches.items() if key.startswith("convergence/")}
    iterations = next(iter(runs.values()))["snapshot_iterations"]
    arrays = {"runs": np.array(list(runs)), "snapshot_iterations": iterations,
              "main_iterations": np.array([caches[key]["provenance"]["iterations"] for key in runs])}
    snapshot = {m: [] for m in SCORES}
    main = {m: [] for m in SCORES}
    for key, cache in runs.items():
        if not np.array_equal(cache["snapshot_iterations"], iterations):
            raise ValueError(f"convergence run {key} took snapshots at other iterations than the rest")
        scores = [decode_session(train, cache["train_labels"], test, cache["test_labels"], int(cache["trial_length"]))
                  for train, test in zip(cache["snapshot_train_embedding"], cache["snapshot_test_embedding"])]
        at_main = _decode_cache(caches[key])
        for m in SCORES:
            snapshot[m].append([s[f"test_{m}"] for s in scores])
            main[m].append(at_main[f"test_{m}"])
    arrays.update({f"snapshot_test_{m}": np.array(v) for m, v in snapshot.items()})
    arrays.update({f"main_test_{m}": np.array(v) for m, v in main.items()})
    return arrays


def _decode_cache(cache: dict) -> dict:
    return decode_session(cache["train_embedding"], cache["train_labels"], cache["test_embedding"],
                          cache["test_labels"], int(cache["trial_length"]))


def _unit_inputs(out_dir: Path, methods, sessions, area) -> dict[str, Path]:
    return {f"{method}/{session}": cache_path(out_dir, Unit(session, area, method))
            for method in methods for session in sessions}


def _reference_files(upstream: Path) -> list[Path]:
    folders = [upstream / f for f in (EMBEDDING_DIR, PMD_DIR, *sorted({f for f, _, _ in FIGURES.values()}))]
    return sorted({p for folder in folders for p in folder.rglob("*.npz")})


def _parity_request(upstream: Path) -> dict:
    """What the parity file is made from: the figures compared and the reference files read (name, size)."""
    files = {str(p.relative_to(upstream)): p.stat().st_size for p in _reference_files(upstream)}
    return {"result": "parity", "figures": list(FIGURES), "reference_files": files}


def build_figure_data(out_dir="data_NER", reference_dir=None, force: bool = False) -> dict:
    """(Re)build every figure data file of ``out_dir`` whose inputs exist and changed.

    ``reference_dir`` is the folder holding the original authors' ``upstream_data_NER/``; without it
    the parity and published files are left as they are. Returns ``computed``, ``skipped`` and ``failed`` ({name: message}).
    """
    out_dir = Path(out_dir)
    session, area = FIGURE_UNIT
    recipes: dict[str, tuple[dict[str, Path], Callable]] = {
        f"decoded_{session}_{area}": ({m: cache_path(out_dir, Unit(session, area, m)) for m in _PAIR}, _decoded),
        f"rank_agreement_{session}_{area}": ({"ner": cache_path(out_dir, Unit(session, area, "ner"))},
                                             _rank_agreement),
        "convergence": (_convergence_inputs(out_dir), _convergence),
        "protocols_Chewie_M1": (_unit_inputs(out_dir, _PAIR, PROTOCOL_SESSIONS, "M1"), _protocols),
    }
    summary = {"computed": [], "skipped": [], "failed": {}}
    for name, (paths, compute) in recipes.items():
        inputs = _inputs(paths) if paths else None
        if inputs is None:
            continue  # its caches are not all there: nothing to draw it from yet
        target, request = result_path(out_dir, name), {"result": name, "inputs": inputs}
        if not force and matches(target, request):
            summary["skipped"].append(str(target))
            continue
        try:
            arrays = compute({key: read_npz(path) for key, path in paths.items()})
        except ValueError as error:
            summary["failed"][f"figure data {name}"] = str(error)
            continue
        publish(target, arrays, request)
        summary["computed"].append(str(target))
    if reference_dir is not None:
        upstream = Path(reference_dir) / "upstream_data_NER"
        if not upstream.is_dir():
            raise ValueError(f"{reference_dir} holds no upstream_data_NER/: point reference_dir at the folder "
                             "holding the original authors' results")
        made_by = {"parity": (_parity_request(upstream),
                              lambda: {"report": np.array(json.dumps(jsonable(compare(upstream))))}),
                   "published": (published_request(out_dir, upstream), lambda: build_published(out_dir, upstream))}
        for name, (request, compute) in made_by.items():
            target = result_path(out_dir, name)
            if not force and matches(target, request):
                summary["skipped"].append(str(target))
                continue
            try:
                publish(target, compute(), request)
            except ValueError as error:  # e.g. no cache of a unit the stored tables score
                summary["failed"][f"figure data {name}"] = str(error)
                continue
            summary["computed"].append(str(target))
    return summary
