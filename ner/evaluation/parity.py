"""Parity report: recompute the paper's M1 decoding numbers from an original ``data_NER/`` folder.

Reads the cached embeddings under ``M1 4+6+6/<Method>_<Subject>[year]/NPZ/``, recomputes every
per-session (Fig 4) and cross-session (Fig 5) decoding number with the original protocol
(legacy) and sets them beside the stored numbers (``Fig4/NPZ_M1/*.npz`` when present, and the
``Fig5/*.npz`` matrices, whose diagonals are the same-session test scores), then recomputes
them with the corrected protocol.

A Fig 5 entry is called *ambiguous* when the 8 per-direction rotation candidates of the
original rule decode to numbers more than ``tolerance`` apart: the rule's criterion is
rounding noise, so which candidate the original machine took cannot be known from the code.
For those entries the report says whether any candidate reproduces the stored numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ner.evaluation.alignment import trial_averages
from ner.evaluation.cross_session import (
    METRICS,
    Session,
    cross_session_matrices,
    pair_alignment,
    session_averages,
)
from ner.evaluation.decoding import TrialDecoder, score_trials
from ner.evaluation.statistics import compare_methods, off_diagonal

__all__ = ["load_embeddings", "compare", "format_report", "main_compare"]

TRIAL_LENGTH = 40
EMBEDDING_DIR = "M1 4+6+6"
# Stored accuracies are percentages; ours are fractions.
STORED_SCALE = {"velocity_r2": 1.0, "position_r2": 1.0, "peak_accuracy": 100.0}
_DATE = re.compile(r"_(?:20)?(\d{6})_")
_YEAR_SUFFIX = re.compile(r"(20\d\d)$")


def load_embeddings(upstream_dir) -> dict:
    """``{method: {yymmdd: Session}}`` for every cached M1 embedding with train and test splits.

    Methods are folder names without a trailing year (``UMAP_Chewie2015`` -> ``UMAP_Chewie``).
    Folders holding trial averages only (PCA, dPCA) have no test split and are listed under
    the key ``"_averages_only"``.
    """
    root = Path(upstream_dir) / EMBEDDING_DIR
    if not root.is_dir():
        raise ValueError(f"{root} not found: pass the data_NER folder that holds '{EMBEDDING_DIR}/'.")
    found: dict = {"_averages_only": set()}
    for path in sorted(root.glob("*/NPZ/*.npz")):
        method = _YEAR_SUFFIX.sub("", path.parent.parent.name)
        date = _DATE.search(path.name)
        if date is None:
            continue
        with np.load(path) as data:
            if "cebra_veldir_test" not in data:
                found["_averages_only"].add(method)
                continue
            session = Session(*(np.asarray(data[k]) for k in (
                "cebra_veldir_train", "continuous_index_train", "cebra_veldir_test", "continuous_index_test")))
        found.setdefault(method, {})[date.group(1)] = session
    found["_averages_only"] = sorted(found["_averages_only"])
    return found


def _stored_fig5(upstream_dir) -> dict:
    stored = {}
    for path in sorted((Path(upstream_dir) / "Fig5").glob("*.npz")):
        with np.load(path) as data:
            # date_subjects repeats each session once per column: the row order is its unique order.
            names = list(dict.fromkeys(str(d) for d in data["date_subjects"]))
            stored[path.stem] = {"names": names, **{m: np.asarray(data[_stored_key(m)]) for m in METRICS}}
    return stored


def _stored_fig4(upstream_dir) -> dict:
    stored = {}
    for path in sorted((Path(upstream_dir) / "Fig4" / "NPZ_M1").glob("*.npz")):
        with np.load(path) as data:
            names = [str(d)[-6:] for d in data["date_subjects"]]
            stored[path.stem] = {"names": names, **{m: np.asarray(data[_stored_key(m)]) for m in METRICS}}
    return stored


def _stored_key(metric):
    return {"velocity_r2": "vel_R_2D", "position_r2": "pos_R_2D", "peak_accuracy": "peak_acc_2D"}[metric]


def _fig4(sessions, decoders, legacy):
    rows = {}
    for date, s in sessions.items():
        train = score_trials(decoders[date], s.train_embedding, s.train_labels, TRIAL_LENGTH)
        test = score_trials(decoders[date], s.test_embedding, s.test_labels, TRIAL_LENGTH, swap_velocity_r2=legacy)
        rows[date] = {f"{split}_{m}": r[m] for split, r in (("train", train), ("test", test)) for m in METRICS}
    return rows


def _fig4_parity(fig4, stored4, stored5, method):
    """Max |ours - stored| per number, against Fig4 tables and the Fig5 diagonals."""
    diffs = {}
    table = stored4.get(method)
    if table is not None:
        for row, date in enumerate(table["names"]):
            if date not in fig4:
                continue
            for col, split in enumerate(("train", "test")):
                for m in METRICS:
                    d = abs(fig4[date][f"{split}_{m}"] * STORED_SCALE[m] - table[m][row, col]) / STORED_SCALE[m]
                    key = f"Fig4 {split}_{m}"
                    diffs[key] = max(diffs.get(key, 0.0), float(d))
    matrix = stored5.get(method)
    if matrix is not None:
        for k, date in enumerate(matrix["names"]):
            if date not in fig4:
                continue
            for m in METRICS:
                d = abs(fig4[date][f"test_{m}"] * STORED_SCALE[m] - matrix[m][k, k]) / STORED_SCALE[m]
                key = f"Fig5 diagonal test_{m}"
                diffs[key] = max(diffs.get(key, 0.0), float(d))
    return diffs


def _fig5_legacy(sessions, decoders, stored, tolerance):
    """Legacy matrices over the stored rows present, with every rotation candidate scored."""
    names = [d for d in stored["names"] if d in sessions]
    averages = {d: session_averages(sessions[d], TRIAL_LENGTH, legacy=True) for d in names}
    pairs = []
    for a in names:
        i = stored["names"].index(a)
        for b in names:
            j = stored["names"].index(b)
            target = np.array([stored[m][i, j] / STORED_SCALE[m] for m in METRICS])
            test = sessions[b]
            if a == b:
                s = score_trials(decoders[a], test.test_embedding, test.test_labels, TRIAL_LENGTH, True)
                candidates, pick = np.array([[s[m] for m in METRICS]]), 0
            else:
                align = pair_alignment(averages[b], averages[a], legacy=True)
                candidates = []
                for rotation in align.candidates:
                    s = score_trials(decoders[a], test.test_embedding @ rotation, test.test_labels, TRIAL_LENGTH, True)
                    candidates.append([s[m] for m in METRICS])
                candidates, pick = np.array(candidates), align.pick
            errors = np.abs(candidates - target).max(axis=1)
            spread = float(np.ptp(candidates, axis=0).max())
            pairs.append({
                "train": a, "test": b, "stored": target.tolist(), "legacy": candidates[pick].tolist(),
                "pick": int(pick), "error": float(errors[pick]), "ambiguous": spread > tolerance,
                "candidate_spread": spread, "matching_candidates": np.flatnonzero(errors <= tolerance).tolist(),
            })
    return names, pairs


def _matrices_to_lists(result):
    return {"names": result["names"], **{m: result[m].tolist() for m in METRICS}}


def compare(upstream_dir, methods=None, tolerance=1e-3) -> dict:
    """Legacy numbers beside the stored ones, then corrected numbers, for the M1 figures.

    ``methods`` restricts the embeddings folders used (e.g. ``["NER_Chewie"]``); default all.
    """
    embeddings = load_embeddings(upstream_dir)
    averages_only = embeddings.pop("_averages_only")
    stored4, stored5 = _stored_fig4(upstream_dir), _stored_fig5(upstream_dir)
    chosen = [m for m in embeddings if methods is None or m in methods]
    result = {"upstream_dir": str(upstream_dir), "tolerance": tolerance, "averages_only": averages_only,
              "fig4_stored_found": sorted(stored4), "fig5_stored_found": sorted(stored5),
              "fig3": _fig3(upstream_dir, embeddings), "fig4": {}, "fig5": {}}
    for method in chosen:
        sessions = embeddings[method]
        # Legacy and corrected modes differ in scoring and alignment only: one decoder per session.
        decoders = {d: TrialDecoder().fit(s.train_embedding, s.train_labels) for d, s in sessions.items()}
        legacy4, corrected4 = _fig4(sessions, decoders, True), _fig4(sessions, decoders, False)
        result["fig4"][method] = {"legacy": legacy4, "corrected": corrected4,
                                  "max_abs_diff": _fig4_parity(legacy4, stored4, stored5, method)}
        stored = stored5.get(method)
        if stored is None or len(sessions) < 2:
            continue
        names, pairs = _fig5_legacy(sessions, decoders, stored, tolerance)
        corrected = cross_session_matrices({d: sessions[d] for d in names}, TRIAL_LENGTH, decoders=decoders)
        unambiguous = [p for p in pairs if not p["ambiguous"]]
        result["fig5"][method] = {
            "sessions": names,
            "missing_sessions": [d for d in stored["names"] if d not in sessions],
            "pairs": pairs,
            "max_abs_diff_unambiguous": max((p["error"] for p in unambiguous), default=None),
            "n_unambiguous": len(unambiguous),
            "n_ambiguous": len(pairs) - len(unambiguous),
            "n_reproduced_by_some_candidate": sum(bool(p["matching_candidates"]) for p in pairs),
            "corrected": _matrices_to_lists(corrected),
        }
    result["statistics"] = _statistics(result["fig5"])
    return result


def _statistics(fig5) -> dict:
    """The paper's paired tests between methods on the corrected Fig 5 cross-session
    entries, over the sessions every method has (pairs matched by train/test session)."""
    if len(fig5) < 2:
        return {}
    names = sorted(set.intersection(*(set(f["corrected"]["names"]) for f in fig5.values())))
    if len(names) < 3:  # fewer than 6 cross-session pairs: no test worth reporting
        return {}
    tests = {}
    for metric in METRICS:
        scores = {}
        for method, fig in fig5.items():
            corrected = fig["corrected"]
            rows = [corrected["names"].index(n) for n in names]
            scores[method] = off_diagonal(np.asarray(corrected[metric])[np.ix_(rows, rows)])
        tests[metric] = compare_methods(scores)
    return {"sessions": names, "tests": tests}


def _fig3(upstream_dir, embeddings):
    """The Fig 3 anchor is the NER trial average of Chewie 2016-10-14's training trials."""
    path = Path(upstream_dir) / "Fig3" / "anchor_emb_Chewie_20161014.npz"
    session = embeddings.get("NER_Chewie", {}).get("161014")
    if not path.exists() or session is None:
        return None
    with np.load(path) as data:
        stored = np.asarray(data["anchor_emb"])
    ours = trial_averages(session.train_embedding, session.train_labels, TRIAL_LENGTH)
    return {"max_abs_diff": float(np.abs(ours - stored).max())}


def _fmt(x):
    return "   nan" if x is None or not np.isfinite(x) else f"{x:7.4f}"


def format_report(result) -> str:
    """Human-readable parity report."""
    tol = result["tolerance"]
    lines = [f"NER parity report for {result['upstream_dir']} (tolerance {tol:g})", ""]
    if result["fig3"] is not None:
        lines.append(f"Fig 3 anchor (NER 161014 training-trial averages): max |diff| {result['fig3']['max_abs_diff']:.2e}")
    if not result["fig4_stored_found"]:
        lines.append("Fig 4 tables (Fig4/NPZ_M1) absent: test numbers checked against the Fig 5 diagonals only.")
    if result["averages_only"]:
        lines.append(f"Trial averages only, nothing to decode: {', '.join(result['averages_only'])}.")
    lines += ["", "== Fig 4: per-session decoding, legacy protocol (accuracy in %) =="]
    header = f"{'method':18s} {'session':7s} {'trVelR2':>7s} {'trPosR2':>7s} {'trAcc':>7s} {'teVelR2':>7s} {'tePosR2':>7s} {'teAcc':>7s}"
    for mode in ("legacy", "corrected"):
        if mode == "corrected":
            lines += ["", "== Fig 4: corrected protocol (test velocity R2 = r2_score(truth, prediction)) =="]
        lines.append(header)
        for method, fig in result["fig4"].items():
            for date, r in sorted(fig[mode].items()):
                values = [r[f"{s}_{m}"] * (100 if m == "peak_accuracy" else 1)
                          for s in ("train", "test") for m in METRICS]
                lines.append(f"{method:18s} {date:7s} " + " ".join(_fmt(v) for v in values))
        if mode == "legacy":
            lines += ["", "Legacy vs stored, max |diff| (accuracy as a fraction):"]
            for method, fig in result["fig4"].items():
                diffs = ", ".join(f"{k} {v:.2e}" for k, v in fig["max_abs_diff"].items()) or "no stored numbers"
                lines.append(f"  {method}: {diffs}")
    lines += ["", "== Fig 5: cross-session matrices (rows: decoder's session, columns: tested) =="]
    for method, fig in result["fig5"].items():
        lines.append(f"{method}: {len(fig['pairs'])} entries over {len(fig['sessions'])} sessions"
                     + (f" (embeddings missing for {', '.join(fig['missing_sessions'])})" if fig["missing_sessions"] else ""))
        worst = fig["max_abs_diff_unambiguous"]
        lines.append(f"  unambiguous entries: {fig['n_unambiguous']}, max |legacy - stored| "
                     f"{'n/a' if worst is None else f'{worst:.2e}'}")
        lines.append(f"  ambiguous entries (rotation candidates disagree by > {tol:g}): {fig['n_ambiguous']}; "
                     f"entries some candidate reproduces: {fig['n_reproduced_by_some_candidate']}/{len(fig['pairs'])}")
        for p in fig["pairs"]:
            if p["ambiguous"]:
                lines.append(
                    f"    {p['train']}->{p['test']}: pick {p['pick']} err {p['error']:.3f}, candidates spread "
                    f"{p['candidate_spread']:.3f}, matching candidates {p['matching_candidates'] or 'none'}")
        lines.append("  corrected (train-trial rotation, one fit on 8 directions, right R2 order):")
        corrected = fig["corrected"]
        for m in METRICS:
            lines.append(f"   {m}:")
            lines.append("            " + " ".join(f"{d:>7s}" for d in corrected["names"]))
            for d, row in zip(corrected["names"], corrected[m]):
                scale = 100 if m == "peak_accuracy" else 1
                lines.append(f"    {d:7s} " + " ".join(_fmt(v * scale) for v in row))
    lines += _format_statistics(result.get("statistics") or {})
    return "\n".join(lines)


def _format_statistics(statistics) -> list[str]:
    if not statistics:
        return []
    n = len(statistics["sessions"])
    lines = ["", f"== Statistics: corrected Fig 5 cross-session entries, {n * (n - 1)} pairs over "
                 f"sessions {', '.join(statistics['sessions'])} =="]
    for metric, tests in statistics["tests"].items():
        lines.append(f"  {metric}:")
        for (a, b), t in tests["paired_ttest"].items():
            lines.append(f"    paired t-test {a} vs {b}: mean diff {t['mean_difference']:+.4f}, "
                         f"t({t['df']}) = {t['statistic']:.2f}, p = {t['pvalue']:.2g}")
        for name in ("repeated_measures_anova", "friedman"):
            if name in tests:
                t = tests[name]
                lines.append(f"    {name.replace('_', ' ')}: statistic {t['statistic']:.2f}, "
                             f"df {t['df']}, p = {t['pvalue']:.2g}")
    return lines


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main_compare(upstream_dir, as_json=False, methods=None) -> str:
    """Text for ``ner compare --upstream DIR [--json]``."""
    result = compare(upstream_dir, methods=methods)
    return json.dumps(_jsonable(result), indent=1) if as_json else format_report(result)
