"""Parity report: the paper's M1 decoding numbers recomputed from the original authors' ``data_NER/``.

Every per-session (Fig 4) and cross-session (Fig 5) number is recomputed from their cached embeddings
with the original protocol (:mod:`ner.reference.legacy`) and set beside their stored numbers
(:mod:`ner.reference.layout`), then recomputed with the corrected protocol.

A Fig 5 entry is *ambiguous* when the 8 rotation candidates of the original rule decode to numbers
more than ``tolerance`` apart: the rule's criterion is rounding noise, so which candidate the original
machine took cannot be known from the code. For those entries the report says whether any candidate
reproduces the stored numbers.
"""

from __future__ import annotations

import numpy as np

from ner.evaluation.cross_session import cross_session_matrices
from ner.evaluation.decoding import SCORES
from ner.evaluation.statistics import compare_methods, off_diagonal
from ner.evaluation.trials import trial_averages
from ner.reference.layout import (
    STORED_SCALE,
    TRIAL_LENGTH,
    load_embeddings,
    stored_anchor,
    stored_fig4,
    stored_fig5,
)
from ner.reference.legacy import legacy_cross_session, session_scores

__all__ = ["compare", "format_report"]


def _fig4_parity(fig4, stored4, stored5, method):
    """Max |ours - stored| per number, against the Fig 4 tables and the Fig 5 diagonals."""
    diffs = {}

    def note(key, ours, stored, m):
        diffs[key] = max(diffs.get(key, 0.0), float(abs(ours * STORED_SCALE[m] - stored) / STORED_SCALE[m]))

    table = stored4.get(method)
    if table is not None:
        for row, date in enumerate(table["names"]):
            for col, split in enumerate(("train", "test")):
                for m in SCORES:
                    if date in fig4:
                        note(f"Fig4 {split}_{m}", fig4[date][f"{split}_{m}"], table[m][row, col], m)
    matrix = stored5.get(method)
    if matrix is not None:
        for k, date in enumerate(matrix["names"]):
            for m in SCORES:
                if date in fig4:
                    note(f"Fig5 diagonal test_{m}", fig4[date][f"test_{m}"], matrix[m][k, k], m)
    return diffs


def _fig5_pairs(sessions, stored, tolerance):
    """Each stored entry whose two sessions have embeddings: stored, our pick, the candidates' spread."""
    names = [d for d in stored["names"] if d in sessions]
    legacy = legacy_cross_session({d: sessions[d] for d in names}, TRIAL_LENGTH)
    pairs = []
    for a in names:
        for b in names:
            i, j = stored["names"].index(a), stored["names"].index(b)
            target = np.array([stored[m][i, j] / STORED_SCALE[m] for m in SCORES])
            k, l = legacy["names"].index(a), legacy["names"].index(b)
            picked = np.array([legacy["matrices"][m][k, l] for m in SCORES])
            candidates = legacy["candidates"].get((a, b), picked[None])
            errors = np.abs(candidates - target).max(axis=1)
            spread = float(np.ptp(candidates, axis=0).max())
            pairs.append({
                "train": a, "test": b, "stored": target.tolist(), "legacy": picked.tolist(),
                "pick": int(legacy["picks"].get((a, b), 0)), "error": float(np.abs(picked - target).max()),
                "ambiguous": spread > tolerance, "candidate_spread": spread,
                "matching_candidates": np.flatnonzero(errors <= tolerance).tolist(),
            })
    return names, pairs


def _matrices_to_lists(result):
    return {"names": result["names"], **{m: result[m].tolist() for m in SCORES}}


def compare(upstream_dir, methods=None, tolerance=1e-3) -> dict:
    """Legacy numbers beside the stored ones, then corrected numbers, for the M1 figures.

    ``methods`` restricts the embeddings folders used (e.g. ``["NER_Chewie"]``); default all.
    """
    embeddings, averages_only = load_embeddings(upstream_dir)
    stored4, stored5 = stored_fig4(upstream_dir), stored_fig5(upstream_dir)
    chosen = [m for m in embeddings if methods is None or m in methods]
    result = {"upstream_dir": str(upstream_dir), "tolerance": tolerance, "averages_only": averages_only,
              "fig4_stored_found": sorted(stored4), "fig5_stored_found": sorted(stored5),
              "fig3": _fig3(upstream_dir, embeddings), "fig4": {}, "fig5": {}}
    for method in chosen:
        sessions = embeddings[method]
        legacy4 = session_scores(sessions, TRIAL_LENGTH, legacy=True)
        result["fig4"][method] = {"legacy": legacy4, "corrected": session_scores(sessions, TRIAL_LENGTH, legacy=False),
                                  "max_abs_diff": _fig4_parity(legacy4, stored4, stored5, method)}
        stored = stored5.get(method)
        if stored is None or len(sessions) < 2:
            continue
        names, pairs = _fig5_pairs(sessions, stored, tolerance)
        corrected = cross_session_matrices({d: sessions[d] for d in names}, TRIAL_LENGTH)
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
    for metric in SCORES:
        scores = {}
        for method, fig in fig5.items():
            corrected = fig["corrected"]
            rows = [corrected["names"].index(n) for n in names]
            scores[method] = off_diagonal(np.asarray(corrected[metric])[np.ix_(rows, rows)])
        tests[metric] = compare_methods(scores)
    return {"sessions": names, "tests": tests}


def _fig3(upstream_dir, embeddings):
    """The Fig 3 anchor is the NER trial average of Chewie 2016-10-14's training trials."""
    stored = stored_anchor(upstream_dir)
    session = embeddings.get("NER_Chewie", {}).get("161014")
    if stored is None or session is None:
        return None
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
                          for s in ("train", "test") for m in SCORES]
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
        for m in SCORES:
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
