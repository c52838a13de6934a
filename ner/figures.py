"""What the figure notebooks share: where the caches and figures live, reading caches, naming methods.

The notebooks in ``notebooks/`` read only ``data_NER/`` (``$NER_CACHE_DIR``) through these functions and
write PDF and PNG into ``figures/`` (``$NER_FIGURES_DIR``). :func:`run_notebooks` executes them, which is
what ``ner figures`` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ner.cache import cache_path, cross_session_path, read_npz, table_path
from ner.pipeline import Unit

__all__ = ["BIN_MS", "LABELS", "cache_dir", "figures_dir", "notebooks_dir", "embedding", "decoding",
           "cross_session", "method_rows", "label", "decode", "aligned_latents", "short_name", "draw_cross_session", "draw_aligned_latents", "save", "trial_average", "run_notebooks"]

BIN_MS = 30  # every reaching session is binned at 30 ms
LABELS = {"ner": "NER", "cebra3d": "CEBRA 3-D", "cebra16d": "CEBRA 16-D", "pivae": "piVAE", "pca": "PCA",
          "dpca": "dPCA", "umap": "UMAP", "umap_label": "UMAP + angle",
          "ner_own_positives": "NER, positives' own labels", "ner_search_all": "NER, search on 3 columns"}
_ROOT = Path(__file__).resolve().parent.parent  # the repository, when ner is installed in place


def cache_dir() -> Path:
    """``$NER_CACHE_DIR``, else the repository's ``data_NER``."""
    return Path(os.environ.get("NER_CACHE_DIR") or _ROOT / "data_NER")


def figures_dir() -> Path:
    """``$NER_FIGURES_DIR``, else the repository's ``figures``."""
    return Path(os.environ.get("NER_FIGURES_DIR") or _ROOT / "figures")


def notebooks_dir() -> Path:
    """The repository's ``notebooks`` folder."""
    return _ROOT / "notebooks"


def _read(path: Path, hint: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; make it with `{hint}`")
    return read_npz(path)


def embedding(method: str, session: str, area: str, root=None) -> dict:
    """The cache of ``method`` on one area of one session (see :mod:`ner.pipeline`)."""
    return _read(cache_path(root or cache_dir(), Unit(session, area, method)),
                 f"ner reproduce --methods {method} --sessions {session} --areas {area}")


def decoding(area: str, root=None) -> dict:
    """The decoding table of ``area`` (see :mod:`ner.tables`)."""
    return _read(table_path(root or cache_dir(), area), "ner reproduce")


def cross_session(subject: str, root=None) -> dict:
    """The cross-session matrices of ``subject`` (see :mod:`ner.tables`)."""
    return _read(cross_session_path(root or cache_dir(), subject), "ner reproduce")


def method_rows(table: dict, methods: Iterable[str]) -> list[int]:
    """Row of each of ``methods`` in a table; a clear error names the ones it lacks."""
    present = table["methods"].tolist()
    missing = [m for m in methods if m not in present]
    if missing:
        raise KeyError(f"the table has no {', '.join(missing)} (it has {', '.join(present)}); "
                       f"run `ner reproduce --methods {' '.join(missing)}`")
    return [present.index(m) for m in methods]


def label(method: str) -> str:
    """The name a figure shows for ``method``."""
    return LABELS.get(method, method)


def trial_average(embedding, labels, trial_length) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction trial averages (8 x trial_length x dims) and the 8 directions' angles."""
    from ner.evaluation.alignment import trial_averages
    from ner.evaluation.decoding import direction_classes

    averages = trial_averages(embedding, labels, trial_length).transpose(2, 0, 1)  # directions first
    classes = direction_classes(labels[::trial_length, 2])
    angles = np.array([labels[::trial_length, 2][classes == c].mean() for c in range(len(averages))])
    return averages, angles


def decode(cache: dict, decoder: str = "linear") -> dict:
    """:func:`~ner.evaluation.decoding.decode_session` on a cache: decoders fitted on its training trials."""
    from ner.evaluation.decoding import decode_session

    return decode_session(cache["train_embedding"], cache["train_labels"], cache["test_embedding"],
                          cache["test_labels"], int(cache["trial_length"]), method=decoder)


def aligned_latents(caches: dict, anchor: str) -> dict:
    """Test-trial averages of each cache before and after aligning it onto ``anchor``'s space.

    ``caches`` maps names to embedding caches of one method. The alignment is the corrected protocol's
    (fitted on training-trial averages only). Returns {name: (before, after, angles)}, each average
    8 directions x bins x dims.
    """
    from ner.evaluation.cross_session import Session, pair_alignment, session_averages

    trial_length = int(caches[anchor]["trial_length"])
    sessions = {name: Session(c["train_embedding"], c["train_labels"], c["test_embedding"], c["test_labels"])
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
    from ner.evaluation.statistics import off_diagonal
    from ner.plotting import plot_matrix

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
    import matplotlib.pyplot as plt

    from ner.plotting import angle_colors

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
    import matplotlib.pyplot as plt

    from ner.plotting import save_figure

    written = save_figure(fig, figures_dir() / name)
    plt.close(fig)
    return written


def run_notebooks(names: Iterable[str] | None = None, timeout: int = 600, progress: bool = True) -> dict:
    """Execute the figure notebooks (all, or those whose file name starts with one of ``names``) in a
    fresh kernel each, in their folder. Returns {notebook: seconds}; the first failing one raises
    with the notebook's name and the error it printed.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    folder = notebooks_dir()
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if names is not None:
        names = list(names)
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(name) for name in names)]
        if not notebooks:
            raise ValueError(f"no notebook in {folder} starts with {', '.join(names)}")
    timings = {}
    for path in tqdm(notebooks, desc="notebooks", unit="nb", disable=not progress):
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(folder)}}).execute()
        except CellExecutionError as error:
            raise RuntimeError(f"notebook {path.name} failed:\n{error}") from None
        timings[path.name] = round(time.perf_counter() - start, 2)
    return timings
