"""Per-direction trial averages: the summary that alignment, PCA, dPCA and the figures share."""

from __future__ import annotations

import numpy as np

from ner.data.labels import N_DIRECTIONS, check_paired, direction_classes

__all__ = ["trial_averages", "direction_angles"]


def trial_averages(samples, labels, trial_length) -> np.ndarray:
    """Mean of the trials of each reach direction: ``(8 directions, trial_length, columns)``.

    ``samples`` (bins x columns: rates or an embedding) and ``labels`` (bins x 3) are whole trials of
    ``trial_length`` bins; direction ``d`` is the angle ``45 * d`` degrees.

    >>> import numpy as np
    >>> labels = np.repeat(np.column_stack([np.zeros((8, 2)), np.arange(8) * 45.0]), 2, axis=0)
    >>> trial_averages(np.arange(16.0)[:, None], labels, trial_length=2)[:, :, 0].tolist()[:2]
    [[0.0, 1.0], [2.0, 3.0]]
    """
    samples, labels = check_paired(samples, labels, trial_length, "averaged")
    trial_length = int(trial_length)
    per_bin = direction_classes(labels[:, 2]).reshape(-1, trial_length)
    if np.any(per_bin != per_bin[:, :1]):
        raise ValueError("the reach angle changes inside a trial; check trial_length and the trial order")
    trials = samples.reshape(-1, trial_length, samples.shape[1])
    return np.stack([trials[per_bin[:, 0] == d].mean(axis=0) for d in range(N_DIRECTIONS)])


def direction_angles() -> np.ndarray:
    """The angle in degrees of each direction row of :func:`trial_averages`."""
    return np.arange(N_DIRECTIONS) * (360.0 / N_DIRECTIONS)
