"""MC_Maze (DANDI 000128, monkey Jenkins maze reaching) from its NWB file, as a Session.

The layout read is DANDI 000128's, the one the Neural Latents Benchmark's ``nlb_tools`` reads: a ``units``
table with ``spike_times`` (its ``obs_intervals`` and ``heldout`` columns are not needed; areas come from
the units' own columns or their electrodes' locations and groups); a ``trials`` table with ``start_time``,
``stop_time`` (nlb_tools calls it ``end_time``), ``move_onset_time``, ``success``, the ragged
``target_pos`` (x, y of every target shown) with ``active_target`` (which one was reached), and the
condition columns ``trial_type``, ``trial_version`` and ``maze_id`` (others, such as ``barrier_pos``
or ``split``, are ignored); and the hand velocity as a TimeSeries ``hand_vel`` in
``processing/behavior`` (or in ``acquisition``) beside ``hand_pos``, ``cursor_pos`` and ``eye_pos``,
sampled at a rate or at timestamps that may leave the gaps between trials out. ``pynwb`` is the
optional extra ``neural-embeddings-rank[nwb]``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ner.extras import missing_extra

from .maze import CONDITION_COLUMNS
from .sessions import Session

# Labels are cm/s times 10, i.e. mm/s; these turn a TimeSeries unit into that.
_VELOCITY_SCALES = {"mm/s": 1.0, "millimeters/second": 1.0, "cm/s": 10.0, "centimeters/second": 10.0,
                    "m/s": 1000.0, "meters/second": 1000.0}
KERNEL_TRUNCATE_SD = 4.0 / 1.5  # the reach sessions' kernel: sd 1.5 bins cut to 9 taps


@dataclass(frozen=True, eq=False)
class MazeTrials:
    """Per-trial facts of a loaded MC_Maze session, row i for the session's trial i.

    ``session.trial_ids`` holds these row numbers per bin, so ``trials.trial_version[session.trial_ids]``
    gives a per-bin condition label, also on ``session.train`` and ``session.test``. Condition columns the
    file lacks are None.
    """

    nwb_trial_id: np.ndarray
    move_onset_time: np.ndarray
    target_pos: np.ndarray
    angle: np.ndarray
    trial_type: np.ndarray | None
    trial_version: np.ndarray | None
    maze_id: np.ndarray | None


def _import_pynwb():
    try:
        import pynwb
    except ImportError as error:
        raise missing_extra("pynwb (reading NWB files)", "nwb", error) from error
    return pynwb


def _hand_velocity(nwbfile, name: str):
    behavior = nwbfile.processing.get("behavior")
    if behavior is not None and name in behavior.data_interfaces:
        return behavior.data_interfaces[name]
    if name in nwbfile.acquisition:
        return nwbfile.acquisition[name]
    raise ValueError(f"no TimeSeries {name!r} in processing/behavior or acquisition: the hand velocity is missing")


def _velocity_scale(series, velocity_scale: float | None) -> float:
    if velocity_scale is not None:
        return float(velocity_scale)
    unit = re.sub(r"\s+", "", str(series.unit)).lower()
    if unit not in _VELOCITY_SCALES:
        raise ValueError(
            f"hand velocity unit {series.unit!r} is not one of {sorted(_VELOCITY_SCALES)}; pass velocity_scale, "
            "the factor that turns it into mm/s (= cm/s x 10)"
        )
    return _VELOCITY_SCALES[unit]


def _unit_area_text(units, row: int) -> str:
    """Everything that names the area of unit ``row``: its own area/location columns and its electrodes'."""
    parts = [str(units[column][row]) for column in ("area", "location") if column in units.colnames]
    if "electrodes" in units.colnames:
        electrodes = units["electrodes"][row]
        if "location" in electrodes.columns:
            parts += [str(value) for value in electrodes["location"]]
        if "group" in electrodes.columns:
            parts += [f"{group.name} {group.location}" for group in electrodes["group"]]
        if "group_name" in electrodes.columns:
            parts += [str(value) for value in electrodes["group_name"]]
    return " ".join(parts)


def _select_units(units, area: str | None) -> list[int]:
    if area is None:
        return list(range(len(units)))
    texts = [_unit_area_text(units, row) for row in range(len(units))]
    if not any(texts):
        raise ValueError(
            f"area={area!r} asked for, but the units carry no area (no area/location column, no electrode "
            "locations or groups); pass area=None to use every unit"
        )
    wanted = area.lower()
    # Whole-word match, so "M1" does not pick up a group called "M10".
    chosen = [row for row, text in enumerate(texts) if wanted in re.split(r"[^a-z0-9]+", text.lower())]
    if not chosen:
        found = sorted({text for text in texts if text})
        raise ValueError(f"no unit in area {area!r}; the units' areas read: {found}")
    return chosen


def _final_target(target_pos, active, trial: int) -> np.ndarray:
    """The target the monkey reached on ``trial``: the active one of several, or the only one."""
    positions = np.asarray(target_pos, dtype=np.float64).reshape(-1, 2)
    if len(positions) == 1:
        return positions[0]
    if active is None:
        raise ValueError(
            f"trial {trial} shows {len(positions)} targets but the trials table has no 'active_target' column "
            "to say which one was reached"
        )
    index = int(active)
    if not 0 <= index < len(positions):
        raise ValueError(f"trial {trial}: active_target {index} is outside its {len(positions)} targets")
    return positions[index]


def _bin_means(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of the finite samples in each [edge_j, edge_j+1) interval; NaN where an interval holds none.

    Running sums skip non-finite samples (NLB masks held-out behaviour with NaN): one NaN must not
    poison every later bin of the recording.
    """
    finite = np.isfinite(values)
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(np.where(finite, values, 0.0), axis=0)])
    counted = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(finite, axis=0)])
    index = np.searchsorted(times, edges, side="left")  # trials x (bins + 1)
    sums = cumulative[index[:, 1:]] - cumulative[index[:, :-1]]
    counts = counted[index[:, 1:]] - counted[index[:, :-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def load_mc_maze(
    path: str | os.PathLike,
    bin_ms: float = 5.0,
    window: tuple[float, float] = (-100.0, 400.0),
    smooth_sd_bins: float = 1.5,
    area: str | None = "M1",
    velocity_name: str = "hand_vel",
    velocity_scale: float | None = None,
) -> tuple[Session, MazeTrials]:
    """Load an MC_Maze NWB file as a Session of fixed windows around movement onset, plus its trial facts.

    Each kept trial is ``window`` (ms, relative to ``move_onset_time``) cut into ``bin_ms`` bins; the defaults
    give the original's 100 bins per trial. Neural rows are spike counts per bin of the units in ``area``
    (None: all units), Gaussian-smoothed with sd ``smooth_sd_bins`` (0: no smoothing). Labels are the hand
    velocity averaged over each bin, in mm/s (= cm/s x 10, as the reach sessions), and the angle in degrees
    [0, 360) from the origin (the maze's start point) to the reached target. Trials are skipped when they
    failed (``success`` false), have no movement onset, or have no hand velocity over the whole window.
    """
    pynwb = _import_pynwb()
    start_ms, end_ms = (float(value) for value in window)
    n_bins = (end_ms - start_ms) / bin_ms
    if bin_ms <= 0 or n_bins < 1 or not math.isclose(n_bins, round(n_bins)):
        raise ValueError(f"window {window} ms must span a positive whole number of {bin_ms} ms bins")
    n_bins = round(n_bins)
    if smooth_sd_bins < 0:
        raise ValueError(f"smooth_sd_bins must be >= 0, got {smooth_sd_bins}")
    # Bins beyond the window on each side (the kernel's radius), so smoothing sees real spikes, not an edge.
    margin = int(KERNEL_TRUNCATE_SD * smooth_sd_bins + 0.5)

    path = Path(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        trials, units = nwbfile.trials, nwbfile.units
        if trials is None or len(trials) == 0:
            raise ValueError(f"{path}: no trials table")
        if units is None or len(units) == 0:
            raise ValueError(f"{path}: no units table")
        for column in ("move_onset_time", "target_pos"):
            if column not in trials.colnames:
                raise ValueError(f"{path}: the trials table has no {column!r} column")
        if "spike_times" not in units.colnames:
            raise ValueError(f"{path}: the units table has no 'spike_times' column")

        onset = np.asarray(trials["move_onset_time"][:], dtype=np.float64)
        keep = np.isfinite(onset)
        if "success" in trials.colnames:
            keep &= np.asarray(trials["success"][:], dtype=bool)

        velocity_series = _hand_velocity(nwbfile, velocity_name)
        scale = _velocity_scale(velocity_series, velocity_scale)
        velocity = np.asarray(velocity_series.data[:], dtype=np.float64)
        if velocity.ndim != 2 or velocity.shape[1] < 2:
            raise ValueError(f"{velocity_name} must be samples x (vx, vy), got shape {velocity.shape}")
        # NWB stores data * conversion + offset in ``unit``; both are 1 and 0 unless the writer said otherwise.
        in_unit = velocity[:, :2] * float(velocity_series.conversion) + float(getattr(velocity_series, "offset", 0.0))
        velocity = in_unit * scale
        if velocity_series.timestamps is not None:
            times = np.asarray(velocity_series.timestamps[:], dtype=np.float64)
        else:
            times = velocity_series.starting_time + np.arange(len(velocity)) / velocity_series.rate

        offsets = (start_ms + bin_ms * np.arange(n_bins + 1)) / 1000.0
        binned_velocity = _bin_means(times, velocity, onset[:, None] + offsets)
        # A bin without a finite sample (outside the recording, or wholly masked): the trial is unusable.
        keep &= np.isfinite(binned_velocity).all(axis=(1, 2))
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            raise ValueError(f"{path}: no trial has a movement onset and hand velocity over the window {window} ms")

        active = trials["active_target"][:] if "active_target" in trials.colnames else None
        target = np.stack([
            _final_target(trials["target_pos"][row], None if active is None else active[row], row) for row in rows
        ])
        conditions = {
            column: np.asarray(trials[column][:])[rows] if column in trials.colnames else None
            for column in CONDITION_COLUMNS
        }
        nwb_ids = np.asarray(trials.id[:])[rows]

        chosen = _select_units(units, area)
        padded = (start_ms - margin * bin_ms + bin_ms * np.arange(n_bins + 2 * margin + 1)) / 1000.0
        edges = onset[rows, None] + padded
        counts = np.empty((len(rows), n_bins + 2 * margin, len(chosen)))
        for column, unit in enumerate(chosen):
            spikes = np.sort(np.asarray(units["spike_times"][unit], dtype=np.float64))
            counts[:, :, column] = np.diff(np.searchsorted(spikes, edges, side="left"), axis=1)

    if smooth_sd_bins > 0:
        counts = gaussian_filter1d(counts, smooth_sd_bins, axis=1, mode="nearest", truncate=KERNEL_TRUNCATE_SD)
    neural = counts[:, margin:margin + n_bins]

    angle = np.mod(np.degrees(np.arctan2(target[:, 1], target[:, 0])), 360.0)
    # A hair below 360 rounds to 360 in the Session's float32, which it rejects; that direction is 0.
    angle[np.float32(angle) >= 360.0] = 0.0
    labels = np.concatenate(
        [binned_velocity[rows], np.broadcast_to(angle[:, None, None], (len(rows), n_bins, 1))], axis=2
    )
    session = Session(
        name=path.stem,
        area=area if area is not None else "all",
        neural=neural.reshape(-1, len(chosen)),
        labels=labels.reshape(-1, 3),
        trial_length=n_bins,
        path=path,
    )
    trial_info = MazeTrials(
        nwb_trial_id=nwb_ids,
        move_onset_time=onset[rows],
        target_pos=target,
        angle=angle,
        **conditions,
    )
    return session, trial_info
