"""Figures 8 and 11: MC_Maze latents and decoded hand paths per condition selection.

:func:`load_runs` finds the runs to draw: the original authors' (their repository's ``data_NER/Fig8``)
where ``$NER_MC_MAZE_REFERENCE`` names such a folder; else this project's caches (``ner mc-maze``);
else the original authors' again, from the ``Fig8`` of the paper's stored results
(:func:`ner.data.download.paper_results_dir`: ``ner fetch --paper-results``, or ``$NER_REFERENCE_DIR``). :func:`draw_figure` draws Fig 8 (NER) or Fig 11 (CEBRA)
from them, decoding every run here, and says in its title whose latents they are.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ner.data.download import FETCH_PAPER_RESULTS, paper_results_dir
from ner.evaluation.maze import MazeRun, RunSet, decode_run
from ner.methods import display_name
from ner.reference.maze import FOLDERS, ORIGINAL, original_runs
from ner.workflow.maze import OURS, cached_runs
from ner.workflow.store import cache_dir

__all__ = ["FETCH_COMMAND", "FIGURE_GROUPS", "HOW_TO", "REFERENCE_ENV", "load_runs", "draw_figure", "headline"]

REFERENCE_ENV = "NER_MC_MAZE_REFERENCE"
FETCH_COMMAND = FETCH_PAPER_RESULTS
HOW_TO = ("No MC_Maze results found. To draw the original authors' MC_Maze latents (decoded here), fetch the "
          "paper's stored results (50 files, 12 MB, checksummed; rerun it to finish an interrupted download), "
          "then rerun this notebook:\n"
          f"    {FETCH_COMMAND}\n"
          "Or train this project's own on the NWB file of DANDI 000128:\n"
          "    dandi download DANDI:000128\n"
          "    ner mc-maze --nwb 000128/sub-Jenkins/sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb")
# Rows of the figure: a title and the selections drawn side by side in it.
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "straight reaches": ("straight_13-29-17-38-6-18",),
    "straight vs curved reaches, one target each": ("straight-curve_13", "straight-curve_38", "straight-curve_18",
                                                    "straight-curve_13-38-18"),
    "curved reaches bending up vs down": ("up-down_37-1", "up-down_31-38", "up-down_34-18",
                                          "up-down_37-1-31-38-34-18"),
}


def _ordered(runs: dict) -> dict:
    order = {name: index for index, name in enumerate(name for group in FIGURE_GROUPS.values() for name in group)}
    return dict(sorted(runs.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _original(folder: Path, method: str) -> RunSet:
    if method not in FOLDERS:
        return RunSet(method, ORIGINAL, folder, {})
    return RunSet(method, ORIGINAL, folder, _ordered(original_runs(folder, method)))


def load_runs(method: str, root=None) -> RunSet:
    """Every MC_Maze run of ``method``, from the first of these that has any:

    1. ``$NER_MC_MAZE_REFERENCE``: a copy of the original repository's ``data_NER/Fig8`` (read in place);
    2. this project's caches under ``<root or ner.workflow.store.cache_dir()>/mc_maze/<method>``;
    3. when ``root`` is None, ``Fig8`` of the paper's stored results, :func:`ner.data.download.paper_results_dir`
       (``$NER_REFERENCE_DIR/upstream_data_NER``, else what ``ner fetch --paper-results`` fetched, used once
       every file is there).

    Empty (falsy) when none has any.
    """
    reference = os.environ.get(REFERENCE_ENV)
    if reference:
        folder = Path(reference)
        if not folder.is_dir():
            raise FileNotFoundError(f"{REFERENCE_ENV}={reference} is not a folder; point it at the original "
                                    f"repository's data_NER/Fig8, or unset it and run `{FETCH_COMMAND}`")
        return _original(folder, method)
    folder = Path(root or cache_dir()) / "mc_maze" / method
    runs = cached_runs(folder, method)
    if runs:
        return RunSet(method, OURS, folder, _ordered(runs))
    stored = paper_results_dir() if root is None else None
    if stored is not None and (stored / "Fig8").is_dir():
        return _original(stored / "Fig8", method)
    return RunSet(method, None, folder, {})


def headline(runset: RunSet) -> str:
    """Whose latents ``runset`` holds, as the figure's title says it."""
    if runset.source == ORIGINAL:
        return "the original authors' MC_Maze latents, decoded by us"
    return "this project's MC_Maze latents (ner mc-maze), decoded by us"

def _group_keys(run: MazeRun, split: str) -> np.ndarray:
    """Per-trial group: the condition id where known, else the target angle (one per trial)."""
    first = slice(None, None, run.trial_length)
    condition = run.condition[split][first]
    angle = np.round(run.target_angle[split][first], 1)
    return np.array([f"c{c}" if c >= 0 else f"a{a:.1f}" for c, a in zip(condition, angle)])


def _group_label(key: str, angle: float) -> str:
    return f"condition {key[1:]} ({angle:.0f}°)" if key.startswith("c") else f"target {angle:.1f}°"


def _palette(runs: list[MazeRun]) -> dict:
    """A colour per group (condition) of the figure, in order of target angle, the same in every panel."""
    angles = {}
    for run in runs:
        for split in ("train", "test"):
            for key, angle in zip(_group_keys(run, split), run.target_angle[split][::run.trial_length]):
                angles.setdefault(key, angle)
    keys = sorted(angles, key=lambda k: (angles[k], k))
    colours = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20").colors
    return {key: (colours[index % len(colours)], _group_label(key, angles[key])) for index, key in enumerate(keys)}


_VERSION_STYLES = {0: "-", 1: "--", 2: ":"}


def _draw_embedding(ax, run: MazeRun, palette: dict, split: str = "test"):
    keys = _group_keys(run, split)
    versions_ = run.version[split][::run.trial_length]
    several_versions = len(set(versions_.tolist())) > 1
    embedding = run.embedding[split]
    for trial, (key, version) in enumerate(zip(keys, versions_)):
        part = embedding[trial * run.trial_length:(trial + 1) * run.trial_length, :3]
        style = _VERSION_STYLES.get(int(version), "-") if several_versions else "-"
        ax.plot(*part.T, color=palette[key][0], lw=0.6, alpha=0.7, ls=style)
        ax.scatter(*part[0], color=palette[key][0], s=4)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    ax.set_title(f"{run.name}\n{run.n_trials(split)} test trials", fontsize=7)


def _draw_trajectories(ax, run: MazeRun, decoded: dict, palette: dict):
    keys = _group_keys(run, "test")
    length = run.trial_length
    for trial, key in enumerate(keys):
        rows = slice(trial * length, (trial + 1) * length)
        ax.plot(*decoded["true_position"][rows].T, color="0.75", lw=0.6)
        ax.plot(*decoded["predicted_position"][rows].T, color=palette[key][0], lw=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.tick_params(labelsize=6)
    ax.set_title(f"test R² velocity {decoded['velocity_r2']:.2f}, position {decoded['position_r2']:.2f}",
                 fontsize=7)


def draw_figure(runset: RunSet, title: str, compare: RunSet | None = None):
    """Fig 8 / Fig 11: per figure group, test embeddings (one 3-D panel per selection) and decoded hand
    paths; then the training loss and every selection's test R^2 (beside ``compare``'s, when given).
    Returns ``(figure, {selection: scores})``."""
    runs = runset.runs
    grouped = [(heading, [runs[n] for n in names if n in runs]) for heading, names in FIGURE_GROUPS.items()]
    placed = {n for names in FIGURE_GROUPS.values() for n in names}
    others = [run for name, run in runs.items() if name not in placed]
    grouped = [(h, rs) for h, rs in grouped if rs] + ([("other selections", others)] if others else [])
    columns = max(4, max(len(rs) for _, rs in grouped))
    n_rows = 2 * len(grouped) + 1
    fig = plt.figure(figsize=(2.8 * columns + 1.5, 2.7 * n_rows))
    grid = fig.add_gridspec(n_rows, columns, hspace=0.75, wspace=0.3)
    scores = {}
    colours = _palette([run for _, row_runs in grouped for run in row_runs])
    for index, (heading, row_runs) in enumerate(grouped):
        keys = {key for run in row_runs for split in ("train", "test") for key in _group_keys(run, split)}
        palette = {key: value for key, value in colours.items() if key in keys}
        for column, run in enumerate(row_runs):
            decoded = decode_run(run)
            scores[run.name] = decoded
            ax = fig.add_subplot(grid[2 * index, column], projection="3d")
            _draw_embedding(ax, run, palette)
            _draw_trajectories(fig.add_subplot(grid[2 * index + 1, column]), run, decoded, palette)
        first = fig.axes[-2 * len(row_runs)]
        first.text2D(0.0, 1.3, heading, transform=first.transAxes, fontsize=10, fontweight="bold")
        handles = [Line2D([], [], color=colour, lw=1.5, label=text) for colour, text in palette.values()]
        shown = {int(v) for run in row_runs for v in np.unique(run.version["test"])}
        if len(shown) > 1:
            handles += [Line2D([], [], color="0.3", lw=1, ls=_VERSION_STYLES.get(v, "-"),
                               label="straight (version 0)" if v == 0 else f"curved (version {v})")
                        for v in sorted(shown)]
        handles.append(Line2D([], [], color="0.75", lw=1, label="true hand path"))
        fig.axes[-1].legend(handles=handles, fontsize=6, frameon=False, loc="upper left",
                            bbox_to_anchor=(1.02, 1.0) if len(row_runs) == columns else (1.1, 1.0))

    ax = fig.add_subplot(grid[-1, :columns // 2])
    for name, run in runs.items():
        if run.loss is not None:
            ax.plot(np.arange(1, len(run.loss) + 1), run.loss, lw=0.8, label=name)
    ax.set_xlabel("iteration", fontsize=7)
    ax.set_ylabel("training loss", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5, frameon=False, ncol=2)
    ax.set_title(f"{display_name(runset.method)} training loss", fontsize=8)

    ax = fig.add_subplot(grid[-1, columns // 2:])
    names = list(scores)
    sets = [(display_name(runset.method), scores)]
    if compare:
        sets.append((f"{display_name(compare.method)} (same source)",
                     {n: decode_run(compare.runs[n]) for n in names if n in compare.runs}))
    width = 0.8 / (2 * len(sets))
    positions = np.arange(len(names))
    for offset, (what, table) in enumerate(sets):
        for kind_index, (kind, hatch) in enumerate((("velocity", None), ("position", "//"))):
            values = [table[n][f"{kind}_r2"] if n in table else np.nan for n in names]
            shift = (2 * offset + kind_index - (2 * len(sets) - 1) / 2) * width
            ax.bar(positions + shift, values, width, color=f"C{offset}", alpha=0.5 + 0.4 * kind_index,
                   hatch=hatch, label=f"{what}: {kind} R²")
            in_sample = [table[n][f"train_{kind}_r2"] if n in table else np.nan for n in names]
            ax.scatter(positions + shift, in_sample, marker="_", s=60, color="k", zorder=3,
                       label="in-sample R² (training trials)" if offset == kind_index == 0 else None)
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize=6)
    lowest = np.nanmin([s[k] for s in scores.values() for k in ("velocity_r2", "position_r2")])
    ax.set_ylim(min(0.0, lowest - 0.05), 1)
    ax.tick_params(labelsize=6)
    ax.set_ylabel("R² (bars: held-out test trials)", fontsize=7)
    ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))

    # The original's results are named, not located, so that the figure is the same wherever they were fetched.
    where = "the original repository's data_NER/Fig8" if runset.source == ORIGINAL else runset.folder
    note = (f"Results: {runset.source}, read from {where}. Embeddings and decoded hand paths of the "
            "held-out test trials (the last 20 % of each selection's trials, in recording order); a linear "
            "decoder fitted on the training trials reads hand velocity from the embedding, position is its "
            "per-trial sum. Colour: condition (its target angle); line style: maze version.")
    fig.suptitle(f"{title}: {headline(runset)}\n" + "\n".join(textwrap.wrap(note, 40 * columns)), fontsize=9, y=1.0)
    return fig, scores
