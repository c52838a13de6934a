"""Parity report: the paper's decoding numbers recomputed from the original authors' ``data_NER/``.

Every stored number whose embeddings are in the folder is recomputed with the original protocol
(:mod:`ner.reference.legacy`) and set beside the stored one (:mod:`ner.reference.layout`): Fig 4 (per
session, M1 and PMd), Fig 5 (Chewie M1 cross-session, linear and kNN decoders) and Fig 6 (Chewie 2016
M1 + PMd cross-session). The Fig 4 and Fig 5 M1 numbers are then recomputed with the corrected protocol.

Each stored entry (a session of Fig 4, a train/test pair of Fig 5 and 6) is counted as

* ``reproduced``: recomputed within ``tolerance`` of the stored numbers;
* ``ambiguous``: a cross-session entry whose rotation the original's rule cannot fix: the candidates its
  rounding noise can select decode more than ``tolerance`` apart, so only their range is a result
  (``matched`` counts those of them a reachable candidate reproduces);
* ``mismatched``: recomputed, unambiguous, and off by more than ``tolerance``;
* ``not_recomputable``: its embeddings are not in the folder (e.g. files of 4 MiB or more).
"""

from __future__ import annotations

import numpy as np

from ner.evaluation.cross_session import cross_session_matrices
from ner.evaluation.decoding import SCORES
from ner.evaluation.statistics import compare_methods, off_diagonal
from ner.evaluation.trials import trial_averages
from ner.reference.layout import (
    EMBEDDING_DIR,
    FIGURES,
    PMD_DIR,
    STORED_SCALE,
    TRIAL_LENGTH,
    check_upstream,
    load_embeddings,
    load_pmd_embeddings,
    recover_names,
    stored_anchor,
    stored_tables,
)
from ner.reference.legacy import legacy_cross_session, session_scores

__all__ = ["STATUSES", "compare", "format_report"]

STATUSES = ("reproduced", "ambiguous", "mismatched", "not_recomputable")
_TITLES = {"fig4_M1": "Fig 4, M1 sessions (Fig4/NPZ_M1)", "fig4_PMd_S1": "Fig 4, PMd and S1 sessions (Fig4/NPZ_PMd_S1)",
           "fig5": "Fig 5, Chewie M1 cross-session, linear", "fig5_knn": "Fig 5, Chewie M1 cross-session, kNN",
           "fig6": "Fig 6, Chewie 2016 M1 + PMd cross-session, linear"}
_RESULT_KEY = {"fig4_M1": "fig4", "fig4_PMd_S1": "fig4_pmd", "fig5": "fig5", "fig5_knn": "fig5_knn", "fig6": "fig6"}


def _stored_row(table, row, col):
    return np.array([table[m][row, col] / STORED_SCALE[m] for m in SCORES])


def _fig4_entries(ours, table, names, tolerance):
    """Per stored session: its status and worst |ours - stored|; and the max |diff| per number."""
    diffs, entries = {}, []
    for row, date in enumerate(names):
        if date not in ours:
            entries.append({"session": date, "status": "not_recomputable"})
            continue
        worst = 0.0
        for col, split in enumerate(("train", "test")):
            errors = np.abs(np.array([ours[date][f"{split}_{m}"] for m in SCORES]) - _stored_row(table, row, col))
            for m, error in zip(SCORES, errors):
                diffs[f"Fig4 {split}_{m}"] = max(diffs.get(f"Fig4 {split}_{m}", 0.0), float(error))
            worst = max(worst, float(errors.max()))
        entries.append({"session": date, "error": worst, "status": "reproduced" if worst <= tolerance else "mismatched"})
    return diffs, entries


def _pair(a, b, target, candidates, info, tolerance):
    """One cross-session entry: the pick's numbers, the reachable candidates' range, the status."""
    if info is None:  # the diagonal: same-session test split, no rotation
        picked, reachable = candidates[0], [0]
    else:
        picked, reachable = candidates[info["pick"]], info["reachable"]
    errors = np.abs(candidates - target).max(axis=1)
    spread = float(np.ptp(candidates[reachable], axis=0).max())
    ambiguous = spread > tolerance
    error = float(np.abs(picked - target).max())
    status = "ambiguous" if ambiguous else "reproduced" if error <= tolerance else "mismatched"
    pair = {"train": a, "test": b, "stored": target.tolist(), "legacy": picked.tolist(), "error": error,
            "status": status, "ambiguous": ambiguous, "candidate_spread": spread,
            "matched_by_reachable": bool((errors[reachable] <= tolerance).any())}
    if info is not None:
        low, high = candidates[reachable].min(axis=0), candidates[reachable].max(axis=0)
        pair.update(pick=info["pick"], reachable=reachable, any_sign_pick=info["any_sign_pick"],
                    error_any_sign=float(errors[info["any_sign_pick"]]),
                    all_candidates_spread=float(np.ptp(candidates, axis=0).max()),
                    matching_candidates=np.flatnonzero(errors <= tolerance).tolist(),
                    range={m: [float(lo), float(hi)] for m, lo, hi in zip(SCORES, low, high)},
                    stored_in_range=bool(np.all((target >= low - tolerance) & (target <= high + tolerance))))
    return pair


def _cross_figure(table, sessions, decoder, tolerance):
    """A stored cross-session table beside the legacy recomputation of its entries that have embeddings."""
    names, recovered = recover_names(table["rows"], sessions)
    n = len(table["velocity_r2"])
    if names is None:
        return {"sessions": [], "missing_sessions": table["rows"], "pairs": [], "stored_entries": n * n}
    present = [d for d in names if d in sessions]
    legacy = legacy_cross_session({d: sessions[d] for d in present}, TRIAL_LENGTH, decoder) if present else None
    pairs = []
    for a in present:
        for b in present:
            i, j = names.index(a), names.index(b)
            target = _stored_row(table, i, j)
            info = None if a == b else legacy["pairs"][(a, b)]
            candidates = np.asarray(legacy["diagonal"][a])[None] if info is None else info["candidates"]
            pairs.append(_pair(a, b, target, candidates, info, tolerance))
    off = [p for p in pairs if p["train"] != p["test"]]
    unambiguous = [p for p in pairs if not p["ambiguous"]]
    return {
        "sessions": present, "missing_sessions": [d for d in names if d not in sessions],
        "names_recovered": recovered, "stored_entries": n * n, "pairs": pairs,
        "max_abs_diff_unambiguous": max((p["error"] for p in unambiguous), default=None),
        "n_unambiguous": len(unambiguous), "n_ambiguous": len(pairs) - len(unambiguous),
        "n_reproduced_by_some_candidate": sum(p["error"] <= tolerance if p["train"] == p["test"]
                                              else bool(p["matching_candidates"]) for p in pairs),
        "n_reproduced_by_pick": sum(p["error"] <= tolerance for p in pairs),
        "n_reproduced_by_any_sign_pick": len(pairs) - len(off) + sum(p["error_any_sign"] <= tolerance for p in off),
        "n_ambiguous_any_sign": sum(p["all_candidates_spread"] > tolerance for p in off),
    }


def _count(statuses, stored, ambiguous_matched=0) -> dict:
    counts = {s: sum(x == s for x in statuses) for s in STATUSES[:3]}
    return {"stored": stored, "compared": len(statuses), **counts, "not_recomputable": stored - len(statuses),
            "ambiguous_matched": ambiguous_matched}


def _chosen(methods, known):
    if methods is None:
        return lambda method: True
    unknown = sorted(set(methods) - known)
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; the folder has {', '.join(sorted(known))}")
    return lambda method: method in methods


def compare(upstream_dir, methods=None, tolerance=1e-3, figures=None) -> dict:
    """Legacy numbers beside the stored ones for every figure of :data:`~ner.reference.layout.FIGURES`,
    then corrected numbers for the M1 figures, and the counts of reproduced / ambiguous / mismatched /
    not recomputable entries per figure and method (``counts``; ``totals`` per figure).

    ``methods`` restricts the methods (e.g. ``["NER_Chewie"]``: its M1, PMd and M1 + PMd folders and its
    tables); ``figures`` the figures (default all). A folder that is no original ``data_NER/`` or that
    leaves nothing to compare raises ValueError.

    Keys: ``fig4`` (M1) and ``fig4_pmd`` (method -> ``legacy``, ``corrected``, ``max_abs_diff``,
    ``entries``), ``fig5``, ``fig5_knn`` and ``fig6`` (method -> ``pairs`` and their summary, ``fig5``
    with ``corrected`` matrices), ``counts`` (figure of ``FIGURES`` -> method -> ``stored``, ``compared``,
    ``reproduced``, ``ambiguous``, ``ambiguous_matched``, ``mismatched``, ``not_recomputable``), ``totals``
    (figure -> the same summed), ``fig3``, ``statistics``.
    """
    root = check_upstream(upstream_dir)
    embeddings, averages_only = load_embeddings(root) if (root / EMBEDDING_DIR).is_dir() else ({}, [])
    pmd, both = load_pmd_embeddings(root)
    tables = stored_tables(root)
    figures = list(FIGURES) if figures is None else list(figures)
    if set(figures) - set(FIGURES):
        raise ValueError(f"unknown figure(s) {sorted(set(figures) - set(FIGURES))}; choose among {list(FIGURES)}")
    known = set(embeddings) | set(pmd) | set(both) | {m for t in tables.values() for m in t}
    chosen = _chosen(methods, known)
    expected = (f"'{EMBEDDING_DIR}/<Method>_<Subject>/NPZ/*.npz' or '{PMD_DIR}/<Method>_Chewie2016[_M1PMd]/NPZ/*.npz' "
                "beside the stored tables Fig4/NPZ_M1/*.npz, Fig4/NPZ_PMd_S1/*.npz, Fig5/*.npz, Fig6/*.npz")
    which = f"{', '.join(figures)}{'' if methods is None else ' for ' + ', '.join(methods)}"
    if not any(chosen(m) for f in figures for m in tables.get(f, {})):
        raise ValueError(f"nothing to compare in {root}: no stored table of {which} (expected {expected})")
    sources = {"fig4_M1": embeddings, "fig4_PMd_S1": pmd, "fig5": embeddings, "fig5_knn": embeddings, "fig6": both}
    result = {"upstream_dir": str(root), "tolerance": tolerance, "figures": figures, "averages_only": averages_only,
              "fig4_stored_found": sorted(tables.get("fig4_M1", {})), "fig5_stored_found": sorted(tables.get("fig5", {})),
              "fig3": _fig3(root, embeddings), "counts": {}, **{_RESULT_KEY[f]: {} for f in figures}}
    fig5_tables = tables.get("fig5", {})
    for figure in figures:
        counts = result["counts"][figure] = {}
        found = sources[figure]
        for method in sorted(m for m in set(found) | set(tables.get(figure, {})) if chosen(m)):
            table, sessions = tables.get(figure, {}).get(method), found.get(method, {})
            if FIGURES[figure][2] == "sessions":
                stored = 0 if table is None else len(table["rows"])
                entries = _session_figure(result[_RESULT_KEY[figure]], method, sessions, table, tolerance,
                                          fig5_tables.get(method) if figure == "fig4_M1" else None)
                if table is not None:
                    counts[method] = _count([e["status"] for e in entries if e["status"] != "not_recomputable"], stored)
                continue
            if table is None:
                continue
            fig = _cross_figure(table, sessions, FIGURES[figure][2], tolerance)
            counts[method] = _count([p["status"] for p in fig["pairs"]], fig["stored_entries"],
                                    sum(p["status"] == "ambiguous" and p["matched_by_reachable"] for p in fig["pairs"]))
            if not fig["pairs"]:
                continue
            if figure == "fig5":
                corrected = cross_session_matrices({d: sessions[d] for d in fig["sessions"]}, TRIAL_LENGTH)
                fig["corrected"] = {"names": corrected["names"], **{m: corrected[m].tolist() for m in SCORES}}
            result[_RESULT_KEY[figure]][method] = fig
    result["totals"] = {f: {k: sum(c[k] for c in counts.values()) for k in ("stored", "compared", *STATUSES[:3],
                                                                            "not_recomputable", "ambiguous_matched")}
                        for f, counts in result["counts"].items()}
    if not any(t["compared"] for t in result["totals"].values()):
        raise ValueError(f"nothing to compare in {root}: no stored entry of {which} has its embeddings there "
                         f"(expected {expected})")
    result["statistics"] = _statistics(result.get("fig5", {}))
    return result


def _session_figure(out, method, sessions, table, tolerance, fig5_table) -> list:
    """Fig 4 of one method and area: legacy and corrected per-session numbers, and the stored entries."""
    if not sessions:
        return []
    legacy = session_scores(sessions, TRIAL_LENGTH, legacy=True)
    diffs, entries, recovered = {}, [], False
    if table is not None:
        names, recovered = recover_names(table["rows"], sessions)
        if names is not None:
            diffs, entries = _fig4_entries(legacy, table, names, tolerance)
    if fig5_table is not None:  # the Fig 5 diagonal is the same-session test split
        names, _ = recover_names(fig5_table["rows"], sessions)
        for k, date in enumerate(names or []):
            if date in legacy:
                errors = np.abs(np.array([legacy[date][f"test_{m}"] for m in SCORES]) - _stored_row(fig5_table, k, k))
                for m, error in zip(SCORES, errors):
                    diffs[f"Fig5 diagonal test_{m}"] = max(diffs.get(f"Fig5 diagonal test_{m}", 0.0), float(error))
    out[method] = {"legacy": legacy, "corrected": session_scores(sessions, TRIAL_LENGTH, legacy=False),
                   "max_abs_diff": diffs, "entries": entries, "names_recovered": recovered}
    return entries


def _statistics(fig5) -> dict:
    """The paper's paired tests between methods on the corrected Fig 5 cross-session
    entries, over the sessions every method has (pairs matched by train/test session)."""
    fig5 = {m: f for m, f in fig5.items() if "corrected" in f}
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


def _format_counts(result) -> list[str]:
    lines = ["", f"== Counts per figure and method (entries within {result['tolerance']:g} of the stored numbers) ==",
             f"  {'method':18s} {'stored':>6s} {'reprod.':>7s} {'ambig.':>7s} {'(match)':>7s} {'mismat.':>7s} "
             + f"{'not rec.':>8s}"]
    for figure, counts in result["counts"].items():
        lines.append(f" {_TITLES[figure]}:")
        for method, c in {**counts, "total": result["totals"][figure]}.items():
            lines.append(f"  {method:18s} {c['stored']:6d} {c['reproduced']:7d} {c['ambiguous']:7d} "
                         f"{c['ambiguous_matched']:7d} {c['mismatched']:7d} {c['not_recomputable']:8d}")
    return lines + ["  (match): ambiguous entries that a candidate the original's rule can reach reproduces"]


def _format_sessions(figures, mode) -> list[str]:
    lines = [f"{'method':18s} {'session':7s} {'trVelR2':>7s} {'trPosR2':>7s} {'trAcc':>7s} "
             + f"{'teVelR2':>7s} {'tePosR2':>7s} {'teAcc':>7s}"]
    for method, fig in figures.items():
        for date, r in sorted(fig[mode].items()):
            values = [r[f"{s}_{m}"] * (100 if m == "peak_accuracy" else 1) for s in ("train", "test") for m in SCORES]
            lines.append(f"{method:18s} {date:7s} " + " ".join(_fmt(v) for v in values))
    if mode == "legacy":
        lines += ["", "Legacy vs stored, max |diff| (accuracy as a fraction):"]
        for method, fig in figures.items():
            diffs = ", ".join(f"{k} {v:.2e}" for k, v in fig["max_abs_diff"].items()) or "no stored numbers"
            lines.append(f"  {method}: {diffs}")
    return lines


def _format_cross(figure, figs, tol) -> list[str]:
    lines = ["", f"== {_TITLES[figure]} (rows: decoder's session, columns: tested) =="]
    for method, fig in figs.items():
        lines.append(f"{method}: {len(fig['pairs'])} of {fig['stored_entries']} stored entries recomputed over "
                     f"{len(fig['sessions'])} sessions" + (f" (embeddings missing for {', '.join(fig['missing_sessions'])})"
                                                           if fig["missing_sessions"] else ""))
        worst = fig["max_abs_diff_unambiguous"]
        lines.append(f"  unambiguous entries: {fig['n_unambiguous']}, max |legacy - stored| "
                     f"{'n/a' if worst is None else f'{worst:.2e}'}; ambiguous (reachable rotations disagree by > "
                     f"{tol:g}): {fig['n_ambiguous']} (all 8 candidates: {fig['n_ambiguous_any_sign']} off-diagonal)")
        lines.append(f"  reproduced by this machine's pick: {fig['n_reproduced_by_pick']}, by the sign-blind pick: "
                     f"{fig['n_reproduced_by_any_sign_pick']}, by some candidate: {fig['n_reproduced_by_some_candidate']}")
        for p in fig["pairs"]:
            if p["ambiguous"]:
                span = " ".join(f"{m.split('_')[0]} [{lo:.3f}, {hi:.3f}]" for m, (lo, hi) in p["range"].items())
                stored = ", ".join(f"{v:.3f}" for v in p["stored"])
                lines.append(f"    {p['train']}->{p['test']}: reachable {p['reachable']} {span}; stored ({stored}) "
                             f"{'in range' if p['stored_in_range'] else 'OUT of range'}, matching "
                             f"{p['matching_candidates'] or 'none'}; pick {p['pick']} err {p['error']:.3f}")
        corrected = fig.get("corrected")
        if corrected is None:
            continue
        lines.append("  corrected (train-trial rotation, one fit on 8 directions, right R2 order):")
        for m in SCORES:
            lines.append(f"   {m}:")
            lines.append("            " + " ".join(f"{d:>7s}" for d in corrected["names"]))
            for d, row in zip(corrected["names"], corrected[m]):
                lines.append(f"    {d:7s} " + " ".join(_fmt(v * (100 if m == "peak_accuracy" else 1)) for v in row))
    return lines


def format_report(result) -> str:
    """Human-readable parity report."""
    tol = result["tolerance"]
    lines = [f"NER parity report for {result['upstream_dir']} (tolerance {tol:g})", ""]
    if result["fig3"] is not None:
        lines.append(f"Fig 3 anchor (NER 161014 training-trial averages): max |diff| {result['fig3']['max_abs_diff']:.2e}")
    if result["averages_only"]:
        lines.append(f"Trial averages only, nothing to decode: {', '.join(result['averages_only'])}.")
    lines += _format_counts(result)
    for key, title in (("fig4", "M1"), ("fig4_pmd", "PMd")):
        if result.get(key):
            lines += ["", f"== Fig 4, {title}: per-session decoding, legacy protocol (accuracy in %) =="]
            lines += _format_sessions(result[key], "legacy")
            lines += ["", f"== Fig 4, {title}: corrected protocol (test velocity R2 = r2_score(truth, prediction)) =="]
            lines += _format_sessions(result[key], "corrected")
    for figure in ("fig5", "fig5_knn", "fig6"):
        if result.get(_RESULT_KEY[figure]):
            lines += _format_cross(figure, result[_RESULT_KEY[figure]], tol)
    lines += _format_statistics(result.get("statistics") or {})
    return "\n".join(lines)


def _format_statistics(statistics) -> list[str]:
    if not statistics:
        return []
    n = len(statistics["sessions"])
    lines = ["", f"== Statistics: corrected Fig 5 cross-session entries, {n * (n - 1)} pairs over "
                 + f"sessions {', '.join(statistics['sessions'])} =="]
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
