"""The paper's panels drawn from our caches, with the paper's own value beside ours wherever it exists.

Hand paths (the centre-out star), predicted-vs-true velocity, per-session scores on a dated axis and
direction accuracy over time; legends sit outside the data. Method colours and markers are the paper's.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score

from ner.data.download import paper_results_dir
from ner.evaluation.decoding import decode_session, trial_positions
from ner.viz.plotting import angle_colors, mean_and_sem

__all__ = ["BIN_S", "STYLE", "ours_paper", "r2", "hand_paths", "decode", "draw_hand_paths",
           "draw_velocity_scatter", "published_values", "draw_sessions", "draw_accuracy", "paper_results_dir",
           "paper_accuracy", "legend_outside"]

BIN_S = 0.030  # seconds per bin
# method -> (colour, marker, name in the paper's stored tables); the first five are the paper's Fig 4.
STYLE = {
    "ner": ("#1f77b4", "*", "NER"), "cebra3d": ("#ff7f0e", "^", "Cebra"), "pivae": ("#2ca02c", "d", "piVAE"),
    "umap_label": ("#9467bd", "o", "UMAP_label"), "umap": ("#d62728", "s", "UMAP"),
    "cebra16d": ("#e377c2", "v", None), "ner_own_positives": ("#17becf", "P", None),
    "ner_search_all": ("#8c564b", "X", None), "pca": ("#7f7f7f", "h", None), "dpca": ("#bcbd22", "p", None),
}


def ours_paper(ours, paper=None, fmt="{:.2f}") -> str:
    """``"0.85 (paper 0.87)"``, or ``"0.85"`` where the paper has no value."""
    text = fmt.format(ours)
    if paper is not None and np.isfinite(paper):
        text += f" (paper {fmt.format(paper)})"
    return text


def r2(truth, predicted) -> float:
    """Coefficient of determination of ``predicted`` for ``truth``, all columns pooled as sklearn's
    ``r2_score`` averages them (uniform over columns)."""
    return float(r2_score(truth, predicted))


def hand_paths(velocity, trial_length, bin_s=BIN_S) -> np.ndarray:
    """Hand position (mm) of each trial from its velocity (mm/s, bins x 2): trials x (trial_length + 1) x 2,
    starting at 0 and adding ``velocity * bin_s`` per bin (the decoders' position, in mm)."""
    steps = trial_positions(velocity, trial_length).reshape(-1, int(trial_length), 2) * bin_s
    return np.concatenate([np.zeros((len(steps), 1, 2)), steps], axis=1)


def decode(cache: dict) -> dict:
    """The linear decoders of :func:`ner.evaluation.decode_session` fitted on an embedding cache's
    training trials (scored in-sample, the paper's protocol, and on the held-out test trials)."""
    return decode_session(cache["train_embedding"], cache["train_labels"], cache["test_embedding"],
                          cache["test_labels"], int(cache["trial_length"]))


def draw_hand_paths(ax, velocity, angles, trial_length, title=""):
    """One line per trial from the centre, coloured by its reach angle: the centre-out star."""
    paths = hand_paths(velocity, trial_length)
    colors = angle_colors(np.asarray(angles)[::int(trial_length)])
    for path, color in zip(paths, colors):
        ax.plot(path[:, 0], path[:, 1], color=color, lw=0.7, alpha=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x position (mm)", fontsize=8)
    ax.set_ylabel("y position (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return paths


def draw_velocity_scatter(ax, truth, predicted, component, paper=None):
    """Decoded against true velocity of one component, the identity line dashed; the title carries its R²."""
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    score = r2(truth, predicted)
    ax.scatter(truth, predicted, s=3, alpha=0.15, color="tab:blue", edgecolor="none", rasterized=True)
    low, high = np.percentile(np.concatenate([truth, predicted]), [0.5, 99.5])
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set_xlim(low, high), ax.set_ylim(low, high)
    ax.set_xlabel(f"true {component} velocity (mm/s)", fontsize=8)
    ax.set_ylabel(f"decoded {component} velocity (mm/s)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{component} velocity, test R² {ours_paper(score, paper)}", fontsize=9)
    return score


def published_values(table, method, sessions, area, column) -> np.ndarray:
    """The paper's stored Fig 4 value of ``column`` for each session (NaN where it has none), read from
    :func:`ner.viz.figures.published`'s table (None: all NaN)."""
    values = np.full(len(sessions), np.nan)
    if table is None:
        return values
    col = table["columns"].tolist().index(column)
    for k, session in enumerate(sessions):
        hit = np.nonzero((table["methods"] == method) & (table["sessions"] == session) & (table["areas"] == area))[0]
        if len(hit):
            values[k] = table["published"][hit[0], col]
    return values


def legend_outside(ax, title=None):
    """The axes' legend to their right, clear of the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, title=title,
                     title_fontsize=7, borderaxespad=0)


def draw_sessions(ax, values, methods, names, paper=None, spread=None, groups=(), labels=None, fmt="{:.2f}"):
    """Scores per session (methods x sessions) on an axis of session names: ours filled in the paper's
    colour and marker, the paper's stored value for the same session hollow (``paper``, NaN where none),
    the range over seeds as a thin line (``spread``, methods x sessions x seeds). ``groups`` is
    [(first column, label)]: a divider and a label per monkey / area. The legend, outside, gives each
    method's median over sessions, ours (paper). Returns {method: (our median, paper's median or nan)}."""
    values = np.asarray(values, float)
    x = np.arange(values.shape[1])
    medians = {}
    for m, method in enumerate(methods):
        color, marker, _ = STYLE[method]
        ours = np.nanmedian(values[m]) if np.isfinite(values[m]).any() else np.nan
        theirs = np.nan
        if paper is not None and np.isfinite(paper[m]).any():
            theirs = np.nanmedian(np.asarray(paper[m], float))
            ax.plot(x, paper[m], ls="none", marker=marker, ms=9, mfc="none", mec=color, mew=1.2)
        if spread is not None:
            low, high = np.nanmin(spread[m], axis=-1), np.nanmax(spread[m], axis=-1)
            ax.vlines(x, low, high, color=color, lw=1)
        medians[method] = (ours, theirs)
        ax.plot(x, values[m], ls="none", marker=marker, ms=8, color=color,
                label=f"{(labels or methods)[m]} {ours_paper(ours, theirs, fmt)}")
    for start, text in groups:
        if start > 0:
            ax.axvline(start - 0.5, color="0.6", lw=0.8)
        ax.text(start - 0.4, 1.0, text, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom", color="0.3")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_xlabel("recording date (YYMMDD)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if paper is not None:
        ax.plot([], [], ls="none", marker="o", mfc="none", mec="0.3", label="hollow: paper, same session")
    legend_outside(ax, "median over sessions")
    return medians


def draw_accuracy(ax, curves, methods, labels, bin_ms, paper=None):
    """Direction accuracy (%) over the trial: per method the mean over sessions (``curves``: methods x
    sessions x bins, fractions, NaN-padded), shaded ± its s.e.m. over sessions; ``paper`` ({method:
    sessions x bins, %}) dashed, its mean. The legend, outside, gives the peak of each mean, ours (paper).
    Returns {method: our peak}."""
    curves = np.asarray(curves, float) * 100
    time_ms = np.arange(curves.shape[-1]) * bin_ms
    peaks = {}
    for m, method in enumerate(methods):
        color = STYLE[method][0]
        mean, sem = mean_and_sem(curves[m])
        theirs = None
        if paper is not None and paper.get(method) is not None:
            reference = np.asarray(paper[method], float).mean(axis=0)
            theirs = float(reference.max())
            ax.plot(np.arange(len(reference)) * bin_ms, reference, color=color, ls="--", lw=1)
        peaks[method] = float(mean.max())
        ax.plot(time_ms, mean, color=color, lw=1.8,
                label=f"{labels[m]} {ours_paper(peaks[method], theirs, '{:.0f}%')}")
        ax.fill_between(time_ms, mean - sem, mean + sem, color=color, alpha=0.15, lw=0)
    ax.axhline(100 / 8, color="0.6", ls=":", lw=1)
    if paper is not None:
        ax.plot([], [], color="0.3", ls="--", lw=1, label="dashed: paper")
    ax.set_xlabel("time from go cue (ms)", fontsize=8)
    ax.set_ylabel("direction accuracy (%)", fontsize=8)
    ax.set_ylim(0, 102)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    legend_outside(ax, "peak of the mean")
    return peaks


def paper_accuracy(method, area, cohort, split="train") -> np.ndarray | None:
    """The paper's stored direction accuracy over time (sessions x bins, %) of ``method`` for ``cohort``
    (``Chewie2016``, ``Han2017``...) in ``area``'s Fig 4 table; ``split`` train (in-sample, what the paper
    plots) or test. None without the paper's stored results (:func:`paper_results_dir`: ``ner fetch
    --paper-results``, or ``$NER_REFERENCE_DIR``) or where they hold no such table."""
    root, stored = paper_results_dir(), STYLE[method][2]
    if root is None or stored is None:
        return None
    path = root / "Fig4" / ("NPZ_M1" if area == "M1" else "NPZ_PMd_S1") / f"{stored}_{cohort}.npz"
    if not path.exists():
        return None
    with np.load(path) as table:
        return np.asarray(table["acc_time_2D"][:, ("train", "test").index(split)], float)
