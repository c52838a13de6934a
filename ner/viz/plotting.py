"""The shared figure vocabulary: hue by reach angle, 3-D latents, true vs decoded traces."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.layout_engine import ConstrainedLayoutEngine

from ner.atomic import atomic_write


def angle_colors(angles_deg) -> np.ndarray:
    """RGBA colours on the hsv wheel, one per reach angle in degrees."""
    return plt.get_cmap("hsv")(np.mod(np.asarray(angles_deg), 360.0) / 360.0)


def plot_embedding_3d(ax, embedding, angles_deg, title="", trial_length=None):
    """Scatter a 3-D embedding coloured by angle; with ``trial_length``, draw
    each trial as a faint line so that trajectories can be followed."""
    embedding = np.asarray(embedding)
    colors = angle_colors(angles_deg)
    if trial_length:
        for start in range(0, len(embedding), trial_length):
            part = embedding[start:start + trial_length]
            ax.plot(*part[:, :3].T, color=colors[start], lw=0.4, alpha=0.5)
    ax.scatter(*embedding[:, :3].T, c=colors, s=2, depthshade=False)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    return ax


def plot_true_vs_decoded(ax, truth, predicted, label, n_bins=400):
    """First ``n_bins`` of a true and a decoded trace."""
    ax.plot(np.asarray(truth)[:n_bins], color="0.3", lw=1, label="true")
    ax.plot(np.asarray(predicted)[:n_bins], color="tab:red", lw=1, label="decoded")
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelsize=7)
    return ax


# No creation date nor software version in the files: the same figure is the same bytes.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
             "svg": {"Date": None, "Creator": None}}


# Constrained layout's solver (kiwisolver) sums each constraint's terms in the order of their memory addresses,
# so its positions change in the last bits from one process to the next: enough to flip the tenth decimal of
# a text position in a PDF now and then. Rounded to 1e-9 of the figure (1e-6 pt on a 15-inch figure), they do not.
_SNAP_DECIMALS = 9


def snap_layout(fig, decimals=_SNAP_DECIMALS):
    """Round the position of every axes and subfigure of ``fig`` to ``decimals`` (figure fractions)."""
    for ax in fig.axes:
        in_layout = ax.get_in_layout()
        ax.set_position(np.round(ax.get_position(original=True).bounds, decimals), which="original")
        ax.set_position(np.round(ax.get_position().bounds, decimals), which="active")
        ax.set_in_layout(in_layout)  # set_position takes an axes out of the layout; keep it where it was
    pending = list(fig.subfigs)
    while pending:
        sub = pending.pop()
        sub.bbox_relative.set_points(np.round(sub.bbox_relative.get_points(), decimals))
        pending.extend(sub.subfigs)


class _SnappedConstrainedLayout(ConstrainedLayoutEngine):
    """Constrained layout, then :func:`snap_layout`."""

    def execute(self, fig):
        info = super().execute(fig)
        snap_layout(fig)
        return info


def save_figure(fig, path_stem, formats=("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<format>`` for each format, atomically and byte-for-byte reproducibly."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if type(engine) is ConstrainedLayoutEngine:  # each format is laid out anew, each time snapped
        fig.set_layout_engine(_SnappedConstrainedLayout(**engine.get(), compress=getattr(engine, "_compress", False)))
    written = []
    try:
        for fmt in formats:
            target = path_stem.with_suffix(f".{fmt}")
            with atomic_write(target) as part:
                fig.savefig(part, format=fmt, dpi=150, bbox_inches="tight", metadata=_METADATA.get(fmt))
            written.append(target)
    finally:
        if engine is not None and fig.get_layout_engine() is not engine:
            fig.set_layout_engine(engine)
    return written


def plot_trial_averages_3d(ax, averages, angles_deg, title=""):
    """One line per direction through its trial-averaged latent (directions x bins x dims), start marked."""
    colors = angle_colors(angles_deg)
    for trajectory, color in zip(np.asarray(averages), colors):
        ax.plot(*trajectory[:, :3].T, color=color, lw=1.5)
        ax.scatter(*trajectory[0, :3], color=color, s=8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    return ax


def plot_paired_scores(ax, values, method_labels, ylabel, per_seed=None, fmt="{:.2f}", paper=None) -> np.ndarray:
    """Scores of several methods (methods x sessions): one grey line per session, a bar at the median.

    The medians are printed under the method names, clear of the data, and under them the paper's value
    of the same score where ``paper`` (one per method, NaN where it has none) gives one. ``per_seed``
    (methods x sessions x seeds, NaN where a seed is missing) draws each point's range over the seeds as a
    vertical line, where it has two seeds or more. Returns the medians.
    """
    values = np.asarray(values, dtype=float)
    positions = np.arange(len(values))
    for column in values.T:
        ax.plot(positions, column, color="0.75", lw=0.8, marker="o", ms=3, zorder=1)
    if per_seed is not None:
        per_seed = np.asarray(per_seed, dtype=float)
        several = np.sum(np.isfinite(per_seed), axis=-1) > 1
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points have no range
            low, high = np.nanmin(per_seed, axis=-1), np.nanmax(per_seed, axis=-1)
        for m, s in zip(*np.nonzero(several)):
            ax.plot([positions[m]] * 2, [low[m, s], high[m, s]], color="0.35", lw=1.2, zorder=2)
    medians = np.nanmedian(values, axis=1)
    ax.bar(positions, medians, width=0.6, color="tab:blue", alpha=0.35, zorder=0)
    theirs = np.full(len(values), np.nan) if paper is None else np.asarray(paper, dtype=float)
    names = [f"{name}\n{fmt.format(ours)}" + (f"\n(paper {fmt.format(their)})" if np.isfinite(their) else "")
             for name, ours, their in zip(method_labels, medians, theirs)]
    ax.set_xticks(positions, names, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return medians


def mean_and_sem(curves) -> tuple[np.ndarray, np.ndarray]:
    """Mean over sessions (axis 0, NaN-padded curves) and its standard error: the sample standard deviation
    (ddof=1) over sqrt(n); 0 where only one session has the bin."""
    curves = np.asarray(curves, dtype=float)
    count = np.sum(np.isfinite(curves), axis=0)
    mean = np.nansum(curves, axis=0) / np.maximum(count, 1)
    squares = np.nansum((curves - mean) ** 2, axis=0)
    return mean, np.sqrt(squares / np.maximum(count - 1, 1) / np.maximum(count, 1)) * (count > 1)


def plot_accuracy_over_time(ax, curves, method_labels, bin_ms, title=""):
    """Direction accuracy per bin (methods x sessions x bins): the mean over sessions, shaded ± its
    standard error (s.e.m.)."""
    curves = np.asarray(curves, dtype=float) * 100
    time_ms = np.arange(curves.shape[-1]) * bin_ms
    for method_curves, name in zip(curves, method_labels):
        mean, sem = mean_and_sem(method_curves)
        ax.plot(time_ms, mean, lw=1.5, label=name)
        ax.fill_between(time_ms, mean - sem, mean + sem, alpha=0.2)
    ax.axhline(100 / 8, color="0.6", ls=":", lw=1)
    ax.set_xlabel("time from go cue (ms)", fontsize=8)
    ax.set_ylabel("direction accuracy (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    return ax
