"""Paired statistics for comparing methods scored on the same sessions or session pairs."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

__all__ = ["off_diagonal", "paired_ttest", "repeated_measures_anova", "friedman", "compare_methods"]


def _check_table(scores, min_conditions=2) -> np.ndarray:
    table = np.asarray(scores, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"scores must be 2-D (subjects x conditions), got shape {table.shape}.")
    if table.shape[1] < min_conditions or table.shape[0] < 2:
        raise ValueError(
            f"need >= 2 subjects and >= {min_conditions} conditions, got {table.shape[0]} x {table.shape[1]}."
        )
    if not np.all(np.isfinite(table)):
        raise ValueError("scores hold NaN or inf; drop the incomplete subjects first.")
    return table


def off_diagonal(matrix) -> np.ndarray:
    """The cross-session entries of an n x n matrix, row by row."""
    matrix = np.asarray(matrix)
    return matrix[~np.eye(len(matrix), dtype=bool)]


def paired_ttest(a, b) -> dict:
    """Two-sided paired t-test of ``a`` against ``b``."""
    table = _check_table(np.column_stack([a, b]))
    result = stats.ttest_rel(table[:, 0], table[:, 1])
    return {
        "statistic": float(result.statistic),
        "pvalue": float(result.pvalue),
        "df": table.shape[0] - 1,
        "mean_difference": float(np.mean(table[:, 0] - table[:, 1])),
    }


def repeated_measures_anova(scores) -> dict:
    """One-way repeated-measures ANOVA on a subjects x conditions table (no sphericity correction)."""
    table = _check_table(scores)
    n, k = table.shape
    grand = table.mean()
    ss_conditions = n * np.sum((table.mean(axis=0) - grand) ** 2)
    ss_subjects = k * np.sum((table.mean(axis=1) - grand) ** 2)
    ss_error = np.sum((table - grand) ** 2) - ss_conditions - ss_subjects
    df_conditions, df_error = k - 1, (n - 1) * (k - 1)
    # Identical rows up to a subject offset leave no error variance: the F ratio is unbounded.
    f = np.inf if ss_error <= 0 else (ss_conditions / df_conditions) / (ss_error / df_error)
    return {
        "statistic": float(f),
        "pvalue": float(stats.f.sf(f, df_conditions, df_error)),
        "df": (df_conditions, df_error),
        "partial_eta_squared": float(ss_conditions / (ss_conditions + ss_error)) if ss_error > 0 else 1.0,
    }


def friedman(scores) -> dict:
    """Friedman test on a subjects x conditions table (needs >= 3 conditions)."""
    table = _check_table(scores, min_conditions=3)
    result = stats.friedmanchisquare(*table.T)
    return {"statistic": float(result.statistic), "pvalue": float(result.pvalue), "df": table.shape[1] - 1}


def compare_methods(scores: dict) -> dict:
    """All the paper's tests over methods scored on the same subjects.

    ``scores`` maps method name -> 1-D scores, paired by position (e.g. :func:`off_diagonal`
    of each method's matrix). Returns pairwise t-tests, and RM-ANOVA and Friedman over all
    methods when there are at least 3.
    """
    names = list(scores)
    table = _check_table(np.column_stack([np.ravel(scores[m]) for m in names]))
    out = {
        "methods": names,
        "paired_ttest": {
            (a, b): paired_ttest(table[:, i], table[:, j])
            for (i, a), (j, b) in itertools.combinations(enumerate(names), 2)
        },
    }
    if len(names) >= 3:
        out["repeated_measures_anova"] = repeated_measures_anova(table)
        out["friedman"] = friedman(table)
    return out
