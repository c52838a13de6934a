"""Latents laid out as the paper's Figs 3, 6 and 7: one column per session (dated), per method a row of
single-bin points above a row of trial averages, before and after alignment onto an anchor session, all
coloured by reach angle on one hsv wheel whose key is drawn once per figure. 3-D embeddings are drawn in 3-D
axes, 2-D ones (UMAP) in plain axes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ner.evaluation.cross_session import (
    SplitEmbedding,
    pair_alignment,
    session_averages,
)
from ner.evaluation.trials import direction_angles, trial_averages
from ner.methods import display_name
from ner.viz.plotting import angle_colors

__all__ = ["ROWS", "STAGES", "column_title", "draw_angle_key", "draw_latents", "session_date", "stage_latents"]

STAGES = ("before", "after")
ROWS = ("points", "averages")
_ROW_LABELS = {"points": "single-bin points", "averages": "trial averages"}


def session_date(unit: str) -> str:
    """``Chewie_20161007_M1`` (or ``Chewie_20161007``) -> ``2016-10-07``."""
    date = next(part for part in unit.split("_") if part.isdigit() and len(part) == 8)
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"


def column_title(unit: str, show_area: bool, anchor: str | None = None) -> str:
    """The session's date, its area where a figure mixes areas, and a mark on the anchor."""
    title = session_date(unit) + (f" {unit.rsplit('_', 1)[1]}" if show_area else "")
    return title + ("\n(anchor)" if unit == anchor else "")


def stage_latents(caches: dict, anchor: str | None = None, max_points: int = 4000, seed: int = 0) -> dict:
    """``{unit: {stage: (points, point angles, trial averages)}}`` of each cache of one method.

    Points are training and test bins (at most ``max_points``, the same ones in both stages); averages
    are over test trials. "after" maps each unit onto ``anchor``'s space by the corrected protocol's
    alignment (fitted on training-trial averages only); without an ``anchor`` there is only "before".
    """
    def split(cache):
        return SplitEmbedding(cache["train_embedding"], cache["train_labels"],
                              cache["test_embedding"], cache["test_labels"])

    target = None if anchor is None else session_averages(split(caches[anchor]), int(caches[anchor]["trial_length"]))
    latents = {}
    for unit, cache in caches.items():
        averages = trial_averages(cache["test_embedding"], cache["test_labels"], int(cache["trial_length"]))
        points = np.concatenate([cache["train_embedding"], cache["test_embedding"]])
        labels = np.concatenate([cache["train_labels"], cache["test_labels"]])
        keep = np.sort(np.random.default_rng(seed).permutation(len(points))[:max_points])
        latents[unit] = {"before": (points[keep], labels[keep, 2], averages)}
        if target is not None:
            alignment = pair_alignment(session_averages(split(cache), int(cache["trial_length"])), target)
            after = alignment.transform(points)
            after_averages = alignment.transform(averages.reshape(-1, averages.shape[-1])).reshape(averages.shape)
            latents[unit]["after"] = (after[keep], labels[keep, 2], after_averages)
    return latents


def draw_angle_key(fig, rect=(0.005, 0.005, 0.07, 0.07)):
    """A small hsv colour wheel of the reach angle (0° = rightward, counter-clockwise) at ``rect``."""
    ax = fig.add_axes(rect, projection="polar")
    degrees = np.arange(0, 360, 5)
    ax.bar(np.deg2rad(degrees), 1.0, width=np.deg2rad(5.5), bottom=0.7, color=angle_colors(degrees))
    ax.set_xticks(np.deg2rad([0, 90, 180, 270]), ["0°", "90°", "180°", "270°"], fontsize=6)
    ax.set_yticks([])
    ax.set_ylim(0, 1.7)
    ax.spines["polar"].set_visible(False)
    ax.grid(False)
    ax.set_title("reach angle", fontsize=7, pad=2)
    return ax


def _bare(ax):
    if ax.name == "3d":
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_pane_color((1, 1, 1, 0))
            axis.line.set_color("0.8")
    else:
        ax.set_xticks([]), ax.set_yticks([])
        ax.spines[:].set_color("0.8")
        ax.set_aspect("equal", adjustable="datalim")  # both latent axes on one scale, as the 3-D panels


def _draw_panel(ax, kind, points, angles, averages):
    """Single-bin points or one line per direction's trial average (its start marked), in 2-D or 3-D."""
    dims = 3 if ax.name == "3d" else 2
    if kind == "points":
        extra = {"depthshade": False} if dims == 3 else {}
        ax.scatter(*points[:, :dims].T, c=angle_colors(angles), s=1.2, alpha=0.7, linewidths=0, **extra)
    else:
        for trajectory, color in zip(averages, angle_colors(direction_angles())):
            ax.plot(*trajectory[:, :dims].T, color=color, lw=1.2)
            ax.scatter(*trajectory[0, :dims], color=color, s=6)
    _bare(ax)


def draw_latents(latents_by_method: dict, anchor: str | None = None, show_area: bool = False, title: str = "",
                 fig=None, rows=ROWS, key: bool = True):
    """The paper's latent panels: for each stage a block with one column per unit, and per method one
    row of single-bin points above one row of trial averages (start of each trial marked).

    ``latents_by_method`` maps methods to :func:`stage_latents` outputs (same units, same order, same
    stages: without "after", one block and no anchor column). ``rows`` picks the rows drawn per method
    (:data:`ROWS`); ``fig`` (a figure or subfigure) is drawn into, else a new figure is made; ``key``
    draws the colour wheel bottom left.
    """
    methods = list(latents_by_method)
    first = next(iter(latents_by_method.values()))
    units = list(first)
    stages = [stage for stage in STAGES if stage in first[units[0]]]
    aligned = "after" in stages
    if aligned and anchor is None:
        raise ValueError("aligned latents need the anchor they were aligned onto")
    marked = anchor if aligned else None
    if fig is None:
        fig = plt.figure(figsize=(1.75 * len(stages) * len(units) + 0.6, 1.8 * len(rows) * len(methods) + 0.9))
    blocks = fig.subfigures(1, len(stages), wspace=0.03, squeeze=False)[0]
    for block, stage in zip(blocks, stages):
        if stage == "after":
            heading = f"after alignment onto {column_title(anchor, show_area)}\n(fitted on training-trial averages only)"
        else:
            heading = ("before alignment: " if aligned else "") + "each session in its own latent space"
        block.suptitle(heading, fontsize=9)
        for m, method in enumerate(methods):
            for u, unit in enumerate(units):
                points, angles, averages = latents_by_method[method][unit][stage]
                projection = "3d" if averages.shape[-1] >= 3 else None
                for r, kind in enumerate(rows):
                    row = len(rows) * m + r
                    ax = block.add_subplot(len(rows) * len(methods), len(units), row * len(units) + u + 1,
                                           projection=projection)
                    _draw_panel(ax, kind, points, angles, averages)
                    if row == 0:
                        ax.set_title(column_title(unit, show_area, marked), fontsize=8)
                    if u == 0:
                        label = ax.text2D if projection else ax.text
                        label(-0.12, 0.5, f"{display_name(method)}\n{_ROW_LABELS[kind]}", transform=ax.transAxes,
                              rotation=90, ha="center", va="center", fontsize=7.5)
    if key:
        draw_angle_key(fig)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    return fig
