"""What the labels mean, and the checks every input passes at the package's boundary.

The paper's labels are one row per 30 ms bin, ``[vx * 10, vy * 10, reach angle in degrees]``
(velocity in cm/s times 10, i.e. mm/s; angle 0, 45, ..., 315, counter-clockwise), whole trials of
``trial_length`` bins back to back. :class:`LabelLayout` describes other continuous labels for NER
(which columns are angles, which ones positives are searched on); :data:`PAPER_LAYOUT` is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["N_DIRECTIONS", "LabelLayout", "PAPER_LAYOUT", "direction_classes", "direction_offsets", "check_samples",
           "check_labels", "check_trials", "check_trial_length", "check_paired"]

N_DIRECTIONS = 8  # centre-out targets every 45 degrees


@dataclass(frozen=True)
class LabelLayout:
    """How NER reads a label array: its width, its circular columns and its search columns.

    Parameters
    ----------
    n_columns : int or None
        Columns ``y`` must have; None takes any width.
    circular : tuple of (column, period)
        Columns measured the short way round (an angle in degrees has period 360).
    search : tuple of int or None
        Columns on which positives are searched; None searches all of them.

    Examples
    --------
    >>> LabelLayout().search_columns(2)          # 2-D positions: plain L1 distance, search both
    (0, 1)
    >>> PAPER_LAYOUT.search_columns(3)           # the paper: search on the two velocities only
    (0, 1)
    """

    n_columns: int | None = None
    circular: tuple[tuple[int, float], ...] = ()
    search: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "circular", tuple((int(c), float(p)) for c, p in self.circular))
        if self.search is not None:
            object.__setattr__(self, "search", tuple(int(c) for c in self.search))
            if not self.search:
                raise ValueError("search names no column; None searches every column")
        if any(period <= 0 for _, period in self.circular):
            raise ValueError(f"circular periods must be positive, got {self.circular}")

    def search_columns(self, n_columns: int) -> tuple[int, ...]:
        """The columns positives are searched on, for labels of ``n_columns`` columns."""
        self.check(n_columns)
        return tuple(range(n_columns)) if self.search is None else self.search

    def check(self, n_columns: int) -> None:
        """Raise a ValueError unless labels of ``n_columns`` columns fit this layout."""
        if self.n_columns is not None and n_columns != self.n_columns:
            raise ValueError(
                f"y has {n_columns} column(s), the label layout expects {self.n_columns}"
                + (" (vx, vy, angle)" if self == PAPER_LAYOUT else "")
                + "; for other labels pass label_layout=LabelLayout(...), e.g. LabelLayout() for any "
                "number of linear columns")
        named = [c for c, _ in self.circular] + list(self.search or ())
        outside = sorted({c for c in named if not 0 <= c < n_columns})
        if outside:
            raise ValueError(f"the label layout names column(s) {outside}, but y has {n_columns} column(s)")


#: The paper's labels ``[vx*10, vy*10, angle]``: three columns, the angle (column 2) circular with period
#: 360, positives searched on the two velocities. The default of :class:`ner.NER <ner.model.estimator.NER>`.
PAPER_LAYOUT = LabelLayout(n_columns=3, circular=((2, 360.0),), search=(0, 1))


def direction_classes(angles) -> np.ndarray:
    """Reach angles in degrees (0, 45, ..., 315) as integer classes 0..7.

    >>> direction_classes([0, 45, 315, 360]).tolist()
    [0, 1, 7, 0]
    """
    return np.rint(np.asarray(angles, dtype=float) / (360.0 / N_DIRECTIONS)).astype(int) % N_DIRECTIONS


def direction_offsets(labels, trial_length: int) -> np.ndarray:
    """Per trial, the reach direction measured from the velocities minus the direction label, in degrees
    wrapped to [-180, 180).

    The measured direction is that of the trial's net displacement (its summed velocity). Near 0 for a
    session whose labels are the reach; Mihili_20140218's are about -45 (:func:`ner.data.load_session <ner.data.sessions.load_session>`).

    >>> labels = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])   # moving at 45 degrees, labelled 0
    >>> direction_offsets(labels, trial_length=2).tolist()
    [45.0]
    """
    labels = check_labels(labels, require_all_directions=False)
    n_trials = check_trials(len(labels), trial_length, name="labels")
    trials = labels.reshape(n_trials, trial_length, -1)
    displacement = trials[:, :, :2].sum(axis=1)
    moved = np.degrees(np.arctan2(displacement[:, 1], displacement[:, 0]))
    return np.mod(moved - trials[:, 0, 2] + 180.0, 360.0) - 180.0


def check_samples(X, name: str = "neural activity", n_columns: int | None = None) -> np.ndarray:
    """``X`` as a finite, non-empty 2-D float array (bins x columns), or a ValueError naming it.

    A 1-D array is one column. ``n_columns``, when given, is the width ``X`` must have.
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (bins x columns), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        raise ValueError(f"{name} holds {int(bad.sum())} NaN/inf values (first in bin {int(np.argwhere(bad)[0, 0])}); "
                         "drop or impute them first")
    if n_columns is not None and X.shape[1] != n_columns:
        raise ValueError(f"{name} has {X.shape[1]} columns, {n_columns} expected (the width it was fitted on)")
    return X


def check_labels(labels, name: str = "labels", require_all_directions: bool = True) -> np.ndarray:
    """The paper's labels as an (n, 3) float array ``[vx*10, vy*10, angle]``, or a ValueError.

    ``require_all_directions`` asks for every one of the 8 reach directions, as decoders of the
    direction need.
    """
    labels = check_samples(labels, name)
    if labels.shape[1] != 3:
        raise ValueError(f"{name} must have shape (bins, 3) = [vx*10, vy*10, angle], got {labels.shape}")
    if require_all_directions:
        found = np.unique(direction_classes(labels[:, 2]))
        if found.size < N_DIRECTIONS:
            raise ValueError(f"{name} hold {found.size} reach directions, {N_DIRECTIONS} are needed "
                             f"(angles 0, 45, ..., 315 degrees); found classes {found.tolist()}")
    return labels


def check_trial_length(trial_length) -> int:
    """``trial_length`` as a positive int, or a ValueError."""
    if isinstance(trial_length, bool) or not float(trial_length).is_integer() or trial_length < 1:
        raise ValueError(f"trial_length must be a positive integer, got {trial_length!r}")
    return int(trial_length)


def check_trials(n_bins: int, trial_length, name: str = "data") -> int:
    """The number of whole trials in ``n_bins`` bins, or a ValueError if they are not whole trials.

    >>> check_trials(120, trial_length=40)
    3
    >>> check_trials(100, trial_length=40)
    Traceback (most recent call last):
        ...
    ValueError: trial_length=40 does not divide the 100 data bins; the data must be whole trials placed back to back
    """
    trial_length = check_trial_length(trial_length)
    if n_bins % trial_length:
        raise ValueError(f"trial_length={trial_length} does not divide the {n_bins} {name} bins; "
                         "the data must be whole trials placed back to back")
    return n_bins // trial_length


def check_paired(X, labels, trial_length=None, name: str = "data",
                 require_all_directions: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Samples and the paper's labels of the same bins, optionally whole trials: both checked."""
    X = check_samples(X, f"{name} samples")
    if labels is None:
        raise ValueError(f"{name} labels are required: shape (bins, 3) = vx*10, vy*10, angle")
    labels = check_labels(labels, f"{name} labels", require_all_directions)
    if len(X) != len(labels):
        raise ValueError(f"{name} has {len(X)} bins of samples but {len(labels)} of labels; "
                         "they must describe the same bins")
    if trial_length is not None:
        check_trials(len(labels), trial_length, name)
    return X, labels
