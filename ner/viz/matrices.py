"""Cross-session matrices laid out as the paper's Figs 5-7: methods side by side, one colour scale and bar
per row, diagonal and off-diagonal means in the titles, the paper's stored means beside ours.

The paper's numbers are read from :func:`ner.data.download.paper_results_dir` (the original authors' stored
tables, :func:`ner.reference.layout.stored_tables`: fetched by ``ner fetch --paper-results``, or
``$NER_REFERENCE_DIR/upstream_data_NER``); without them every reader returns None and the titles show only
ours.
"""

from __future__ import annotations

import textwrap

import numpy as np

from ner.data.download import FETCH_PAPER_RESULTS, REFERENCE_ENV, paper_results_dir
from ner.evaluation.statistics import off_diagonal
from ner.methods import display_name
from ner.reference.layout import STORED_SCALE, recover_names, stored_tables

__all__ = [
    "METRICS",
    "add_caption",
    "draw_accuracy_curves",
    "draw_matrix_grid",
    "draw_matrix_row",
    "means",
    "metric_label",
    "paper_caption",
    "paper_diagonal",
    "paper_key",
    "paper_matrices",
]

METRICS = ("velocity_r2", "position_r2", "peak_accuracy")
_LABEL = {"velocity_r2": "velocity R²", "position_r2": "position R²", "peak_accuracy": "peak direction accuracy (%)"}
_SCALE = {"velocity_r2": 1.0, "position_r2": 1.0, "peak_accuracy": 100.0}  # fractions -> what is shown
_PAPER_METHOD = {"NER": "ner", "Cebra": "cebra3d", "Cebra_16D": "cebra16d", "piVAE": "pivae"}


def metric_label(metric: str) -> str:
    """``position_r2`` -> ``position R²``; accuracy in %."""
    return _LABEL[metric]


def paper_matrices(figure: str, subject: str = "Chewie") -> dict | None:
    """``{our method: {"names", metric: n x n as fractions, "accuracy_curves": bins x pairs in %}}`` of the
    paper's ``figure`` (``fig5``, ``fig5_knn`` or ``fig6``), or None without the paper's stored results."""
    root = paper_results_dir()
    tables = stored_tables(root).get(figure, {}) if root else {}
    if not tables:
        return None
    known = next((t["rows"] for t in tables.values() if recover_names(t["rows"], ())[0]), [])
    found = {}
    for stored, table in tables.items():
        ours = _PAPER_METHOD.get(stored.removesuffix(f"_{subject}"))
        names, _ = recover_names(table["rows"], known)
        if ours is None or names is None:
            continue
        found[ours] = {"names": names, **{m: table[m] / STORED_SCALE[m] for m in METRICS},
                       "accuracy_curves": table["accuracy_curves"]}
    return found


def paper_key(unit: str, tagged: bool = False) -> str:
    """``Chewie_20161007_PMd`` -> ``161007`` (Fig 5's row names) or ``161007PM`` with ``tagged`` (Fig 6's)."""
    session, area = unit.rsplit("_", 1)
    return session.rsplit("_", 1)[1][2:] + (("M1" if area == "M1" else "PM") if tagged else "")


def means(matrix) -> tuple[float, float]:
    """Mean of the diagonal (same-session test split) and of the off-diagonal (cross-session) cells."""
    matrix = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore"):
        return float(np.nanmean(np.diag(matrix))), float(np.nanmean(off_diagonal(matrix)))


def paper_diagonal(paper, method, metric, units, tagged=False) -> tuple[float, np.ndarray] | None:
    """The paper's same-session scores (its matrix diagonal): the mean over all its units, and the score
    of each of ``units`` (NaN where it has none); None where ``paper`` lacks ``method``."""
    if not paper or method not in paper:
        return None
    names, diagonal = paper[method]["names"], np.diag(paper[method][metric])
    keys = [paper_key(unit, tagged) for unit in units]
    return float(np.mean(diagonal)), np.array([diagonal[names.index(k)] if k in names else np.nan for k in keys])


def _pair(metric, diagonal, off) -> str:
    scale = _SCALE[metric]
    unit = "%" if scale != 1 else ""
    digits = 1 if scale != 1 else 2
    return f"diag {diagonal * scale:.{digits}f}{unit} · off {off * scale:.{digits}f}{unit}"


def _paper_line(paper, metric, keys) -> str:
    """The paper's means over all its sessions, and over the ones we share where that is fewer."""
    names, matrix = paper["names"], paper[metric]
    line = f"paper {_pair(metric, *means(matrix))}"
    shared = [names.index(k) for k in keys if k in names]
    if 1 < len(shared) < len(names):
        line += f"\npaper on our {len(shared)}: {_pair(metric, *means(matrix[np.ix_(shared, shared)]))}"
    return line


def draw_matrix_row(axes, table, units, decoder, methods, metric, paper=None, tagged=False, values=True):
    """One metric of ``methods`` (one per axis) over ``units`` on one colour scale with one colour bar.

    ``table`` is a cross-session table (:mod:`ner.workflow.tables`); ``paper`` the matching
    :func:`paper_matrices` (or None), whose means are printed under ours. Returns the colour bar.
    """
    if len(axes) != len(methods):
        raise ValueError(f"{len(methods)} methods need as many axes, got {len(axes)}")
    scale = _SCALE[metric]
    present = table["methods"].tolist()
    index = [table["units"].tolist().index(unit) for unit in units]
    keys = [paper_key(unit, tagged) for unit in units]
    ticks = [paper_key(unit, False) + (f" {unit.rsplit('_', 1)[1]}" if tagged else "") for unit in units]
    for k, (ax, method) in enumerate(zip(axes, methods)):
        matrix = table[f"{decoder}_{metric}"][present.index(method)][np.ix_(index, index)]
        image = ax.imshow(matrix * scale, cmap="viridis", vmin=0, vmax=scale, interpolation="none")
        if values:
            for (i, j), value in np.ndenumerate(matrix * scale):
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}" if scale == 1 else f"{value:.0f}", ha="center", va="center",
                            fontsize=6.5, color="white" if value < scale * 0.6 else "black")
        title = f"{display_name(method)}, {decoder}: {metric_label(metric).replace(' direction', '')}\nours {_pair(metric, *means(matrix))}"
        if paper and method in paper:
            title += "\n" + _paper_line(paper[method], metric, keys)
        ax.set_title(title, fontsize=7.5)
        ax.set_xticks(range(len(units)), ticks, rotation=90, fontsize=6.5)
        ax.set_yticks(range(len(units)), ticks if k == 0 else [], fontsize=6.5)
        ax.set_xlabel("tested on", fontsize=7)
        if k == 0:
            ax.set_ylabel("decoder trained on", fontsize=7)
    bar = axes[0].figure.colorbar(image, ax=list(axes), shrink=0.8, pad=0.02)
    bar.set_label(metric_label(metric) + (" (< 0 shown as 0)" if scale == 1 else ""), fontsize=7)
    bar.ax.tick_params(labelsize=6.5)
    return bar


def draw_matrix_grid(fig, table, units, blocks, metrics=METRICS, tagged=False) -> list[list]:
    """One row per metric, one block of columns per ``(decoder, methods, paper)`` in ``blocks`` (the
    paper's linear block beside its kNN one); each block row has its own colour bar. Returns the axes."""
    cells = fig.subfigures(len(metrics), len(blocks), squeeze=False)
    grid = []
    for r, metric in enumerate(metrics):
        row = []
        for c, (decoder, methods, paper) in enumerate(blocks):
            axes = cells[r, c].subplots(1, len(methods), squeeze=False)[0]
            draw_matrix_row(axes, table, units, decoder, methods, metric, paper=paper, tagged=tagged)
            row.extend(axes)
        grid.append(row)
    return grid


def draw_accuracy_curves(ax, table, units, decoder, methods, bin_ms, paper=None):
    """Direction accuracy per bin, mean ± SD over every train/test pair of ``units`` (the diagonal
    included, as the paper's "mean and SD across sessions"); the legend gives each curve's peak."""
    present = table["methods"].tolist()
    index = [table["units"].tolist().index(unit) for unit in units]
    for method in methods:
        per_bin = table[f"{decoder}_accuracy_per_bin"][present.index(method)][np.ix_(index, index)]
        curves = per_bin.reshape(-1, per_bin.shape[-1]) * 100
        time_ms = np.arange(curves.shape[1]) * bin_ms
        mean, sd = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
        name = f"{display_name(method)} peak {np.nanmax(mean):.1f}%"
        if paper and method in paper:
            name += f" (paper {np.max(paper[method]['accuracy_curves'].mean(axis=1)):.1f}%)"
        line, = ax.plot(time_ms, mean, lw=1.8, label=name)
        ax.fill_between(time_ms, mean - sd, mean + sd, color=line.get_color(), alpha=0.12)
    ax.axhline(100 / 8, color="0.6", ls=":", lw=1)
    ax.set_xlabel("time from go cue (ms)", fontsize=8)
    ax.set_ylabel("direction accuracy (%)", fontsize=8)
    ax.set_title(f"cross-session direction accuracy ({decoder}), mean ± SD over {len(units)}² pairs", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    return ax


def paper_caption(units, paper, tagged=False, missing_text="") -> str:
    """Which of the paper's units we have, or how to show its values."""
    if not paper:
        return missing_text or (f"Paper values: run `{FETCH_PAPER_RESULTS}` (or set {REFERENCE_ENV} to the folder "
                                "holding upstream_data_NER/) to print them beside ours.")
    names = next(iter(paper.values()))["names"]
    keys = [paper_key(unit, tagged) for unit in units]
    lacking = [n for n in names if n not in keys]
    return (f"The paper's matrices cover {len(names)} units; we have {len(names) - len(lacking)} of them "
            f"({', '.join(k for k in keys if k in names)}); lacking {', '.join(lacking) or 'none'}. "
            "'paper' = its means over all its units; 'paper on our n' = over the units we share.")


def add_caption(fig, *lines, width=170):
    """Caption lines under ``fig``, wrapped at ``width`` characters."""
    text = "\n".join(textwrap.fill(line, width) for line in lines if line)
    return fig.text(0.01, -0.02, text, ha="left", va="top", fontsize=8)
