"""Recording sessions of centre-out reaching, as the NER paper used them."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from .labels import N_DIRECTIONS, check_paired, check_trial_length, direction_offsets

FILE_SUFFIX = "_neural_con_dis_index.mat"
DEFAULT_TRIAL_LENGTH = 40  # Chewie and Mihili files carry no t_dur; their trials are 40 bins (1.2 s)
DATA_DIR_ENV = "NER_DATA_DIR"
DIRECTIONS = ("recorded", "movement")  # what load_session takes the direction labels from
# Labels further than half a direction step from the measured reach are named in a warning.
OFFSET_WARNING_DEGREES = 360.0 / N_DIRECTIONS / 2

# scipy reports a damaged MATLAB file through any of these, depending on where the damage is.
_MAT_READ_ERRORS = (MatReadError, OSError, ValueError, IndexError, EOFError, zlib.error, struct.error)


@dataclass(frozen=True, eq=False)
class Session:
    """One session (or a trial range of it): neural activity of one area plus movement labels.

    ``labels`` columns are vx*10, vy*10 (cm/s, scaled as in the paper) and the reach angle in degrees
    (0..315, counter-clockwise). Rows are whole trials of ``trial_length`` bins, in recording order.
    """

    name: str
    area: str
    neural: np.ndarray
    labels: np.ndarray
    trial_length: int
    trial_ids: np.ndarray | None = None
    sha256: str | None = None
    path: Path | None = None

    def __post_init__(self):
        if np.ndim(self.neural) != 2:
            raise ValueError(f"neural must be 2-D (bins x units), got shape {np.shape(self.neural)}")
        # Directions may be missing from a part of a session: decoders ask for all 8, a session does not.
        neural, labels = check_paired(self.neural, self.labels, name="session", require_all_directions=False)
        trial_length = check_trial_length(self.trial_length)
        if len(neural) % trial_length:
            raise ValueError(f"{len(neural)} bins is not a whole number of trials of {trial_length} bins; "
                             "check trial_length (t_dur) or the file")
        angle = labels[:, 2]
        if angle.min() < 0 or angle.max() >= 360:
            raise ValueError(
                f"angles must lie in [0, 360) degrees, got {angle.min():g}..{angle.max():g}; "
                "map them with numpy.mod(angle, 360)"
            )
        n_trials = len(neural) // trial_length
        if self.trial_ids is None:
            trial_ids = np.repeat(np.arange(n_trials), trial_length)
        else:
            trial_ids = np.asarray(self.trial_ids)
            if trial_ids.shape != (len(neural),):
                raise ValueError(f"trial_ids must have shape ({len(neural)},), got {trial_ids.shape}")
            blocks = trial_ids.reshape(n_trials, trial_length)
            if (blocks != blocks[:, :1]).any():
                raise ValueError(f"trial_ids must be constant within each block of {trial_length} bins")
        object.__setattr__(self, "neural", np.ascontiguousarray(neural, dtype=np.float32))
        object.__setattr__(self, "labels", np.ascontiguousarray(labels, dtype=np.float32))
        object.__setattr__(self, "trial_length", trial_length)
        object.__setattr__(self, "trial_ids", trial_ids)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    def __repr__(self):
        return (
            f"Session({self.name!r}, area={self.area!r}, trials={self.n_trials}, units={self.n_units}, "
            f"trial_length={self.trial_length})"
        )

    @property
    def n_trials(self) -> int:
        return len(self.neural) // self.trial_length

    @property
    def n_units(self) -> int:
        return self.neural.shape[1]

    @property
    def velocity(self) -> np.ndarray:
        """Hand velocity as labelled: (vx, vy) in cm/s times 10."""
        return self.labels[:, :2]

    @property
    def angle(self) -> np.ndarray:
        """Reach direction in degrees, 0..315."""
        return self.labels[:, 2]

    @property
    def direction_offset(self) -> float:
        """Median over trials of the reach direction measured from the velocities minus the label, in
        degrees (:func:`ner.data.labels.direction_offsets`): near 0 where the labels are the reach."""
        return float(np.median(direction_offsets(self.labels, self.trial_length)))

    @property
    def n_train_trials(self) -> int:
        """Trials in the paper's chronological training split: the first floor(80 %)."""
        return self.n_trials * 4 // 5

    @property
    def train(self) -> Session:
        """The first ``n_train_trials`` trials."""
        return self.trials(0, self.n_train_trials)

    @property
    def test(self) -> Session:
        """The trials after the training split."""
        return self.trials(self.n_train_trials, self.n_trials)

    def trials(self, start: int, stop: int) -> Session:
        """Trials ``start`` to ``stop`` (exclusive), in recording order."""
        if start == stop:
            raise ValueError(
                f"{self.name}: {self.n_trials} trial(s) leave a split empty; the 80/20 split needs 2 or more"
            )
        rows = slice(start * self.trial_length, stop * self.trial_length)
        return Session(
            name=self.name,
            area=self.area,
            neural=self.neural[rows],
            labels=self.labels[rows],
            trial_length=self.trial_length,
            trial_ids=self.trial_ids[rows],
            sha256=self.sha256,
            path=self.path,
        )


class SessionInfo(NamedTuple):
    """A session file found on disk."""

    name: str
    path: Path
    areas: tuple[str, ...]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The session directory: ``data_dir``, else $NER_DATA_DIR, else ./data."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def session_name(path: str | os.PathLike) -> str:
    """Session name of a file: its name without ``_neural_con_dis_index.mat``."""
    name = Path(path).name
    return name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else Path(path).stem


def _areas_in(keys) -> tuple[str, ...]:
    return tuple(key[len("neural_"):] for key in keys if key.startswith("neural_"))


def available_sessions(data_dir: str | os.PathLike | None = None) -> list[SessionInfo]:
    """Session files in the data directory, sorted by name (empty if the directory does not exist)."""
    folder = resolve_data_dir(data_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*" + FILE_SUFFIX)):
        try:
            areas = _areas_in(name for name, _, _ in scipy.io.whosmat(path))
        except _MAT_READ_ERRORS:
            areas = ()  # unreadable header: still listed, so the user sees it; load_session says what is wrong
        found.append(SessionInfo(session_name(path), path, areas))
    return found


def _unknown_session(name: str, folder: Path) -> FileNotFoundError:
    from .download import session_names  # late import: fetch imports this module

    present = [info.name for info in available_sessions(folder)]
    where = f"{folder} (set {DATA_DIR_ENV} or pass data_dir to look elsewhere)"
    listing = ", ".join(present) if present else "none"
    if name in session_names():
        fix = f"download it with `ner fetch {name}` or ner.data.fetch([{name!r}], dest=...)"
    else:
        fix = "sessions that can be fetched: " + ", ".join(session_names())
    return FileNotFoundError(f"session {name!r} not found in {where}; sessions there: {listing}; {fix}")


def _resolve_path(name_or_path: str | os.PathLike, data_dir) -> Path:
    candidate = Path(name_or_path)
    looks_like_path = isinstance(name_or_path, os.PathLike) or candidate.suffix == ".mat" or len(candidate.parts) > 1
    if looks_like_path:
        if not candidate.is_file():
            raise FileNotFoundError(f"session file {candidate} does not exist")
        return candidate
    folder = resolve_data_dir(data_dir)
    path = folder / (str(name_or_path) + FILE_SUFFIX)
    if not path.is_file():
        raise _unknown_session(str(name_or_path), folder)
    return path


def load_session(
    name_or_path: str | os.PathLike, area: str = "M1", data_dir: str | os.PathLike | None = None,
    directions: str = "recorded",
) -> Session:
    """Load one area of a session file (a name such as "Chewie_20161007", or a path to the .mat file).

    Labels become [vx*10, vy*10, angle mod 360]: Chewie/Mihili store -180..135 (Mihili_20140218 uses +180
    for -180), Han stores 0..315 already. Trial length comes from ``t_dur`` where the file has it (Han: 35),
    else 40.

    ``directions="recorded"`` (the default, as the paper) keeps the file's direction labels, with a
    warning where they lie more than 22.5 degrees from the reach measured from the velocities
    (:attr:`Session.direction_offset`): Mihili_20140218's are the reach plus about 45 degrees.
    ``"movement"`` turns every label by that offset rounded to whole directions, so the labels name the
    reach. Within one session this changes no decoding score (the angle enters NER only through label
    differences, and the direction classes are only renamed); across sessions it decides which
    directions are aligned with which.
    """
    if directions not in DIRECTIONS:
        raise ValueError(f"directions must be one of {', '.join(DIRECTIONS)}, got {directions!r}")
    path = _resolve_path(name_or_path, data_dir)
    raw = path.read_bytes()
    try:
        # mat_dtype: otherwise discrete_index is int16/uint16 (uint16 differences wrap) and t_dur uint8.
        contents = scipy.io.loadmat(io.BytesIO(raw), mat_dtype=True)
    except _MAT_READ_ERRORS as exc:
        raise ValueError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); it is probably truncated or "
            "corrupt: delete it and fetch it again"
        ) from exc
    keys = [key for key in contents if not key.startswith("__")]
    missing = [key for key in ("continuous_index", "discrete_index") if key not in keys]
    if missing:
        present = ", ".join(sorted(keys)) or "none"
        raise ValueError(f"{path} lacks the key(s) {', '.join(missing)} (keys present: {present})")
    areas = _areas_in(keys)
    canonical = {a.lower(): a for a in areas}
    if str(area).lower() not in canonical:
        raise ValueError(
            f"{path} has no recording of area {area!r}: areas present are {', '.join(areas) or 'none'}"
        )
    area = canonical[str(area).lower()]
    neural = contents["neural_" + area]
    velocity = contents["continuous_index"]
    direction = contents["discrete_index"]
    if direction.ndim == 2 and direction.shape[1] == 1:
        direction = direction[:, 0]
    shapes = {"neural_" + area: neural.shape, "continuous_index": velocity.shape, "discrete_index": direction.shape}
    if velocity.ndim != 2 or velocity.shape[1] != 2 or direction.ndim != 1 or neural.ndim != 2 or not (
        len(neural) == len(velocity) == len(direction)
    ):
        raise ValueError(
            f"{path}: expected neural (T x units), continuous_index (T x 2) and discrete_index (T x 1) with one "
            f"T, got {shapes}"
        )
    trial_length = DEFAULT_TRIAL_LENGTH
    if "t_dur" in contents:
        t_dur = np.ravel(contents["t_dur"])
        if t_dur.size != 1 or not float(t_dur[0]).is_integer() or t_dur[0] < 1:
            raise ValueError(f"{path}: t_dur must be one positive whole number of bins, got {contents['t_dur']!r}")
        trial_length = int(t_dur[0])
    labels = np.column_stack([velocity * 10.0, np.mod(direction, 360.0)])
    try:
        session = Session(
            name=session_name(path),
            area=area,
            neural=neural,
            labels=labels,
            trial_length=trial_length,
            sha256=hashlib.sha256(raw).hexdigest(),
            path=path,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    blocks = session.angle.reshape(session.n_trials, trial_length)
    if (blocks != blocks[:, :1]).any():
        raise ValueError(
            f"{path}: discrete_index changes within a trial of {trial_length} bins, so the trial length is wrong "
            "for this file (set t_dur in the file)"
        )
    offset = session.direction_offset
    step = 360.0 / N_DIRECTIONS
    if directions == "movement" and abs(offset) > OFFSET_WARNING_DEGREES:
        labels = session.labels.copy()
        labels[:, 2] = np.mod(labels[:, 2] + step * round(offset / step), 360.0)
        session = dataclasses.replace(session, labels=labels)
    elif abs(offset) > OFFSET_WARNING_DEGREES:
        warnings.warn(f"{session.name} {area}: the direction labels are {offset:+.1f} degrees off the reach "
                      "measured from the velocities (median over trials); they are kept as recorded, as the "
                      "paper did; load_session(..., directions='movement') turns them onto the reach",
                      stacklevel=2)
    return session
