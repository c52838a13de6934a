"""The shared figure vocabulary: hue by reach angle, 3-D latents, true vs decoded traces."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no screen on the machines this runs on
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ner.atomic import atomic_write  # noqa: E402


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


def save_figure(fig, path_stem, formats=("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<format>`` for each format, atomically."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path_stem.with_suffix(f".{fmt}")
        with atomic_write(target) as part:
            fig.savefig(part, format=fmt, dpi=150, bbox_inches="tight")
        written.append(target)
    return written
