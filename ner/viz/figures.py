"""What the figure notebooks share: reading the caches, naming methods, panels drawn in several figures.

The notebooks in ``notebooks/`` read only ``data_NER/`` (``$NER_CACHE_DIR``) through these functions and
write PDF and PNG into ``figures/`` (``$NER_FIGURES_DIR``); :mod:`ner.viz.notebooks` executes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ner.data.labels import direction_offsets
from ner.evaluation.cross_session import (
    SplitEmbedding,
    pair_alignment,
    session_averages,
)
from ner.evaluation.statistics import off_diagonal
from ner.evaluation.trials import direction_angles, trial_averages
from ner.methods import display_name
from ner.viz.plotting import angle_colors, plot_matrix, save_figure
from ner.workflow.published import group_medians
from ner.workflow.store import (
    REPOSITORY,
    Unit,
    cache_dir,
    cache_path,
    cross_session_path,
    read_npz,
    result_path,
    table_path,
)

__all__ = ["BIN_MS", "FIGURES_DIR_ENV", "cache_dir", "figures_dir", "embedding", "decoding", "cross_session",
           "result", "parity_report", "published", "published_medians", "session_row", "method_rows", "label", "off_diagonal", "trial_average",
           "aligned_latents", "direction_offsets", "short_name", "draw_cross_session", "draw_aligned_latents", "save"]

BIN_MS = 30  # every reaching session is binned at 30 ms
FIGURES_DIR_ENV = "NER_FIGURES_DIR"
label = display_name  # what a figure calls a method


def figures_dir() -> Path:
    """``$NER_FIGURES_DIR``, else the repository's ``figures``."""
    return Path(os.environ.get(FIGURES_DIR_ENV) or REPOSITORY / "figures")


def _read(path: Path, hint: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with `{hint}`")
    return read_npz(path)


def embedding(method: str, session: str, area: str, root=None, seed: int = 0) -> dict:
    """The cache of ``method`` fitted with ``seed`` on one area of one session (see :mod:`ner.workflow.run`)."""
    return _read(cache_path(root or cache_dir(), Unit(session, area, method, seed)),
                 f"ner reproduce --methods {method} --sessions {session} --areas {area} --seeds {seed}")


def decoding(area: str, root=None) -> dict:
    """The decoding table of ``area`` (see :mod:`ner.workflow.tables`)."""
    return _read(table_path(root or cache_dir(), area), "ner reproduce")


def cross_session(subject: str, root=None) -> dict:
    """The cross-session matrices of ``subject`` (see :mod:`ner.workflow.tables`)."""
    return _read(cross_session_path(root or cache_dir(), subject), "ner reproduce")


def result(name: str, root=None) -> dict:
    """The figure data ``name`` (see :mod:`ner.workflow.figure_data`)."""
    return _read(result_path(root or cache_dir(), name), "ner reproduce")


def parity_report(root=None) -> dict | None:
    """The parity report on the original authors' latents (:mod:`ner.reference.parity`), or None where
    it was never made (it needs their folder: ``ner reproduce --reference DIR``)."""
    path = result_path(root or cache_dir(), "parity")
    return json.loads(str(read_npz(path)["report"])) if path.exists() else None


def published(root=None) -> dict | None:
    """The paper's stored Fig 4 numbers beside ours, unit by unit (:mod:`ner.workflow.published`), or None
    where it was never made (it needs the original's folder: ``ner reproduce --reference DIR``)."""
    path = result_path(root or cache_dir(), "published")
    return read_npz(path) if path.exists() else None


published_medians = group_medians  # medians per method and area / monkey, with the paired differences


def session_row(table: dict, session: str) -> int:
    """Column of ``session`` in a decoding table; a clear error when it has none."""
    present = table["sessions"].tolist()
    if session not in present:
        raise KeyError(f"the table has no session {session} (it has {', '.join(present)})")
    return present.index(session)


def method_rows(table: dict, methods: Iterable[str]) -> list[int]:
    """Row of each of ``methods`` in a table; a clear error names the ones it lacks."""
    present = table["methods"].tolist()
    missing = [m for m in methods if m not in present]
    if missing:
        raise KeyError(f"the table has no {', '.join(missing)} (it has {', '.join(present)}); "
                       f"run `ner reproduce --methods {' '.join(missing)}`")
    return [present.index(m) for m in methods]


def trial_average(embedding, labels, trial_length) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction trial averages (8 x trial_length x dims) and the 8 directions' angles."""
    return trial_averages(embedding, labels, trial_length), direction_angles()


def aligned_latents(caches: dict, anchor: str) -> dict:
    """Test-trial averages of each cache before and after aligning it onto ``anchor``'s space.

    ``caches`` maps names to embedding caches of one method. The alignment is the corrected protocol's
    (fitted on training-trial averages only). Returns {name: (before, after, angles)}, each average
    8 directions x bins x dims.
    """
    trial_length = int(caches[anchor]["trial_length"])
    sessions = {name: SplitEmbedding(c["train_embedding"], c["train_labels"], c["test_embedding"], c["test_labels"])
                for name, c in caches.items()}
    target = session_averages(sessions[anchor], trial_length)
    latents = {}
    for name, cache in caches.items():
        before, angles = trial_average(cache["test_embedding"], cache["test_labels"], trial_length)
        alignment = pair_alignment(session_averages(sessions[name], trial_length), target)
        after = alignment.transform(before.reshape(-1, before.shape[-1])).reshape(before.shape)
        latents[name] = (before, after, angles)
    return latents


def short_name(unit: str) -> str:
    """``Chewie_20161007_M1`` -> ``C161007 M1``: unit names that fit under a matrix."""
    session, area = unit.rsplit("_", 1)
    subject, date = session.split("_", 1)
    return f"{subject[0]}{date[2:]} {area}"


def draw_cross_session(axes, table, method, units, decoders=("linear",),
                       metrics=("velocity_r2", "position_r2", "peak_accuracy")):
    """Cross-session matrices of ``method`` among ``units`` on ``axes``, one per (decoder, metric)."""
    m = table["methods"].tolist().index(method)
    index = [table["units"].tolist().index(unit) for unit in units]
    panels = [(decoder, metric) for decoder in decoders for metric in metrics]
    if len(axes) != len(panels):
        raise ValueError(f"{len(panels)} panels (decoders x metrics) need as many axes, got {len(axes)}")
    for ax, (decoder, metric) in zip(axes, panels):
        scale = 100 if metric == "peak_accuracy" else 1
        matrix = table[f"{decoder}_{metric}"][m][np.ix_(index, index)] * scale
        plot_matrix(ax, matrix, [short_name(unit) for unit in units],
                    f"{label(method)}, {decoder}: {metric.replace('_', ' ')}\n"
                    f"off-diagonal mean {np.nanmean(off_diagonal(matrix)):.2f}",
                    vmin=0, vmax=scale, fmt="{:.2f}" if scale == 1 else "{:.0f}")


def draw_aligned_latents(methods, units, anchor, styles=("-", "--", ":", "-.")):
    """Test-trial averages of ``units`` per method, before (top) and after (bottom) alignment onto ``anchor``."""
    fig = plt.figure(figsize=(3.2 * len(methods), 6.6))
    for col, method in enumerate(methods):
        caches = {unit: embedding(method, *unit.rsplit("_", 1)) for unit in units}
        latents = aligned_latents(caches, anchor)
        for row, stage in enumerate(("before", "after")):
            ax = fig.add_subplot(2, len(methods), row * len(methods) + col + 1, projection="3d")
            for k, (before, after, angles) in enumerate(latents.values()):
                for trajectory, color in zip(before if stage == "before" else after, angle_colors(angles)):
                    ax.plot(*trajectory[:, :3].T, color=color, lw=1.2, ls=styles[k % len(styles)])
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
            ax.set_title(f"{label(method)}, {stage} alignment", fontsize=9)
    fig.text(0.5, 0.01, "line style per unit: " + ", ".join(f"{styles[k % len(styles)]} {short_name(unit)}"
                                                          for k, unit in enumerate(units))
             + f"; aligned onto {short_name(anchor)}", ha="center", fontsize=8)
    return fig


def save(fig, name: str) -> list[Path]:
    """Write ``fig`` as ``figures/<name>.pdf`` and ``.png`` and close it."""
    written = save_figure(fig, figures_dir() / name)
    plt.close(fig)
    return written
