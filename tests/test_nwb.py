"""load_mc_maze on a small MC_Maze-shaped NWB file written here: cosine-tuned units, 16 reaches in 8 directions."""

import sys
from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from ner.data.nwb import load_mc_maze

N_TRIALS = 16
TRIAL_S = 2.0
ONSET_S = 0.8005  # half a sample off the 1 kHz grid, so no velocity sample sits on a bin edge
RATE_HZ = 1000.0
BIN_MS = 20.0
WINDOW = (-200.0, 600.0)
N_BINS = 40


def _write(path, *, trial_columns=True, hand_vel=True, units=True, drop=(), nan_at=()):
    """Write the test file; ``drop`` names trial columns to leave out, ``nan_at`` velocity samples masked."""
    rng = np.random.default_rng(0)
    nwb = pynwb.NWBFile(
        session_description="synthetic maze", identifier="test", session_start_time=datetime.now(timezone.utc)
    )
    directions = np.deg2rad(np.resize(np.arange(8) * 45.0, N_TRIALS))
    times = np.arange(int(N_TRIALS * TRIAL_S * RATE_HZ)) / RATE_HZ
    velocity = np.zeros((len(times), 2))  # mm/s
    for trial, direction in enumerate(directions):
        since = times - (trial * TRIAL_S + ONSET_S)
        speed = np.where((since >= 0) & (since < 0.5), 600.0 * np.sin(np.pi * since / 0.5) ** 2, 0.0)
        velocity[:, 0] += speed * np.cos(direction)
        velocity[:, 1] += speed * np.sin(direction)

    if units:
        device = nwb.create_device(name="arrays")
        groups = {area: nwb.create_electrode_group(area, description="array", location=area, device=device)
                  for area in ("M1", "PMd")}
        for index in range(40):
            nwb.add_electrode(group=groups["M1" if index < 30 else "PMd"], location="M1" if index < 30 else "PMd")
        preferred = rng.uniform(0, 2 * np.pi, 40)
        rate = 15.0 + 0.05 * (velocity @ np.stack([np.cos(preferred), np.sin(preferred)]))
        spikes = rng.random(rate.shape) < np.clip(rate, 0, None) / RATE_HZ
        for index in range(40):
            nwb.add_unit(spike_times=times[spikes[:, index]] + 0.0002, electrodes=[index])

    for name, description in (("move_onset_time", "movement onset"), ("trial_version", "maze condition"),
                              ("active_target", "index of the reached target"), ("success", "rewarded")):
        if name not in drop:
            nwb.add_trial_column(name, description)
    if "target_pos" not in drop:
        nwb.add_trial_column("target_pos", "target positions (mm)", index=True)
    for trial, direction in enumerate(directions):
        reached = 100.0 * np.array([np.cos(direction), np.sin(direction)])
        # Odd trials also show a distractor before the reached target, as maze trials with several targets do.
        shown = [reached] if trial % 2 == 0 else [-reached, reached]
        values = {"move_onset_time": trial * TRIAL_S + ONSET_S, "trial_version": trial % 3,
                  "active_target": len(shown) - 1, "success": trial != 5, "target_pos": shown}
        nwb.add_trial(start_time=trial * TRIAL_S, stop_time=(trial + 1) * TRIAL_S,
                      **{key: value for key, value in values.items() if key not in drop})

    velocity_written = velocity.copy()
    velocity_written[list(nan_at)] = np.nan
    if hand_vel:
        behavior = nwb.create_processing_module("behavior", "hand kinematics")
        behavior.add(pynwb.TimeSeries(name="hand_vel", data=velocity_written, unit="mm/s", rate=RATE_HZ, starting_time=0.0))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return velocity, directions


@pytest.fixture(scope="module")
def maze(tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb") / "maze.nwb"
    velocity, directions = _write(path)
    session, trials = load_mc_maze(path, bin_ms=BIN_MS, window=WINDOW)
    return session, trials, velocity, directions


def test_shapes_trials_and_area(maze):
    session, trials, _, _ = maze
    kept = [trial for trial in range(N_TRIALS) if trial != 5]  # trial 5 failed
    assert session.trial_length == N_BINS
    assert session.n_trials == len(kept)
    assert session.n_units == 30  # the M1 units only
    assert session.neural.shape == (len(kept) * N_BINS, 30)
    np.testing.assert_array_equal(trials.nwb_trial_id, kept)
    np.testing.assert_array_equal(trials.trial_version, np.array(kept) % 3)
    np.testing.assert_array_equal(trials.trial_version[session.test.trial_ids], trials.trial_version[-3:].repeat(N_BINS))
    assert trials.trial_type is None and trials.maze_id is None


def test_angles_are_the_reached_targets(maze):
    session, trials, _, directions = maze
    kept = np.delete(np.arange(N_TRIALS), 5)
    expected = np.degrees(directions[kept]) % 360
    np.testing.assert_allclose(trials.angle, expected, atol=1e-9)
    np.testing.assert_allclose(session.angle, expected.repeat(N_BINS), atol=1e-4)


def test_velocity_labels_are_the_binned_hand_velocity(maze):
    session, _, velocity, _ = maze
    per_bin = int(BIN_MS)  # 1 kHz samples per bin, none on an edge
    expected = []
    for trial in np.delete(np.arange(N_TRIALS), 5):
        first = int(np.ceil((trial * TRIAL_S + ONSET_S + WINDOW[0] / 1000) * RATE_HZ))
        expected.append(velocity[first:first + N_BINS * per_bin].reshape(N_BINS, per_bin, 2).mean(axis=1))
    np.testing.assert_allclose(session.velocity, np.concatenate(expected), rtol=1e-5, atol=1e-3)


def test_linear_decoder_beats_chance(maze):
    session = maze[0]
    train, test = session.train, session.test

    def design(part):
        return np.column_stack([part.neural, np.ones(len(part.neural))])

    weights = np.linalg.lstsq(design(train), train.velocity, rcond=None)[0]
    residual = ((design(test) @ weights - test.velocity) ** 2).sum()
    r2 = 1 - residual / ((test.velocity - test.velocity.mean(axis=0)) ** 2).sum()
    assert r2 > 0.5


def test_all_units_and_no_smoothing(tmp_path):
    _write(tmp_path / "maze.nwb")
    session, _ = load_mc_maze(tmp_path / "maze.nwb", bin_ms=BIN_MS, window=WINDOW, area=None, smooth_sd_bins=0)
    assert session.n_units == 40 and session.area == "all"
    assert np.array_equal(session.neural, np.round(session.neural))  # raw counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": ("move_onset_time",)}, "move_onset_time"),
        ({"drop": ("target_pos",)}, "target_pos"),
        ({"drop": ("active_target",)}, "active_target"),
        ({"hand_vel": False}, "hand_vel"),
        ({"units": False}, "units"),
    ],
)
def test_missing_fields_are_named(tmp_path, kwargs, message):
    _write(tmp_path / "maze.nwb", **kwargs)
    with pytest.raises(ValueError, match=message):
        load_mc_maze(tmp_path / "maze.nwb", bin_ms=BIN_MS, window=WINDOW)


def test_bad_window_and_unknown_area(tmp_path):
    _write(tmp_path / "maze.nwb")
    with pytest.raises(ValueError, match="whole number"):
        load_mc_maze(tmp_path / "maze.nwb", bin_ms=30, window=WINDOW)
    with pytest.raises(ValueError, match="S1"):
        load_mc_maze(tmp_path / "maze.nwb", bin_ms=BIN_MS, window=WINDOW, area="S1")


def test_masked_velocity_samples_leave_the_other_samples_binned(tmp_path, maze):
    # NLB files mask behaviour with NaN. One NaN before the first trial used to poison every running sum
    # after it, so that every trial was dropped; now a bin averages its finite samples only.
    before_first = 100  # 0.1 s, before the first window opens at 0.6 s
    in_trial_3 = int((3 * TRIAL_S + ONSET_S) * RATE_HZ) + 50
    _write(tmp_path / "masked.nwb", nan_at=(before_first, in_trial_3))
    session, trials = load_mc_maze(tmp_path / "masked.nwb", bin_ms=BIN_MS, window=WINDOW)
    reference, reference_trials = maze[0], maze[1]
    assert trials.nwb_trial_id.tolist() == reference_trials.nwb_trial_id.tolist()
    trial_3 = np.isin(session.trial_ids, np.flatnonzero(reference_trials.nwb_trial_id == 3))
    np.testing.assert_array_equal(session.labels[~trial_3], reference.labels[~trial_3])
    # The bin that lost a sample is the mean of the other 19: close to, not equal to, the full mean.
    changed = np.flatnonzero(np.any(session.labels != reference.labels, axis=1))
    assert len(changed) == 1 and trial_3[changed[0]]
    np.testing.assert_allclose(session.labels[changed], reference.labels[changed], atol=30)


def test_without_pynwb_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(ImportError, match=r'pip install "neural-embeddings-rank\[nwb\]"'):
        load_mc_maze(tmp_path / "absent.nwb")
