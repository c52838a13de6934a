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


# --- a file laid out as DANDI 000128 (MC_Maze) is, as nlb_tools reads it -------------------------------------
# nlb_tools' NWBDataset reads: trials.to_dataframe() (id -> trial_id, stop_time -> end_time), the units'
# spike_times, obs_intervals and heldout, and every TimeSeries of processing/behavior by name (hand_vel,
# hand_pos, cursor_pos, eye_pos). MC_Maze's recording is trialized: no behaviour sample between trials.

DANDI_TRIALS = 12
DANDI_BIN_MS = 5.0
DANDI_WINDOW = (-100.0, 400.0)  # the defaults: the original's 100 bins of 5 ms
DANDI_BINS = 100
# MC_Maze's trial_info columns as nlb_tools' NWBDataset lists them
NLB_TRIAL_INFO = ["trial_id", "start_time", "end_time", "trial_type", "trial_version", "maze_id", "success",
                  "target_on_time", "go_cue_time", "move_onset_time", "rt", "delay", "num_targets", "target_pos",
                  "num_barriers", "barrier_pos", "active_target", "split"]
LATE_TRIAL = 7  # its movement onset is so late that the window runs past the recorded samples
FAILED_TRIAL = 4
NO_ONSET_TRIAL = 9


def _write_dandi_layout(path, *, velocity_unit="mm/s", conversion=1.0):
    rng = np.random.default_rng(3)
    nwb = pynwb.NWBFile(session_description="MC_Maze-shaped test file", identifier="000128-like",
                        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="Utah arrays")
    groups = {area: nwb.create_electrode_group(f"{area} array", description="Utah array", location=area,
                                               device=device) for area in ("M1", "PMd")}
    for channel in range(12):
        area = "M1" if channel < 7 else "PMd"
        nwb.add_electrode(group=groups[area], location=area)

    starts = 3.0 * np.arange(DANDI_TRIALS)
    stops = starts + 2.2
    onsets = starts + 1.0 + 0.01 * rng.integers(0, 30, DANDI_TRIALS) + 0.0005  # off the 1 kHz grid
    onsets[LATE_TRIAL] = stops[LATE_TRIAL] - 0.2
    onsets[NO_ONSET_TRIAL] = np.nan
    # behaviour: 1 kHz samples within trials only, with explicit timestamps
    stamps = np.concatenate([np.round(np.arange(a, b, 0.001), 6) for a, b in zip(starts, stops)])
    velocity = rng.normal(0, 200.0, (len(stamps), 2)).cumsum(axis=0) * 0.01  # mm/s, smooth-ish
    position = np.cumsum(velocity, axis=0) * 0.001
    behavior = nwb.create_processing_module("behavior", "hand, cursor and eye")
    behavior.add(pynwb.TimeSeries(name="hand_vel", data=velocity, unit=velocity_unit,
                                  conversion=conversion, timestamps=stamps, description="hand velocity"))
    for name in ("hand_pos", "cursor_pos", "eye_pos"):
        behavior.add(pynwb.TimeSeries(name=name, data=position + rng.normal(0, 0.1, position.shape), unit="mm",
                                      timestamps=stamps, description=name))

    # 12 units, one per electrode; spike times continuous (never on a bin edge), only within trials
    nwb.add_unit_column("heldout", "held out in the benchmark")
    spikes = []
    for unit in range(12):
        times = np.sort(np.concatenate([rng.uniform(a, b, rng.poisson(40 * (b - a))) for a, b in zip(starts, stops)]))
        spikes.append(times)
        nwb.add_unit(spike_times=times, electrodes=[unit], heldout=unit >= 10,
                     obs_intervals=np.column_stack([starts, stops]))

    ragged = {"target_pos": "x, y of every target shown (mm)",
              "barrier_pos": "x, y, half width, half height of every barrier (mm)"}
    for name in NLB_TRIAL_INFO[3:]:  # in MC_Maze's order, after id, start_time and stop_time
        nwb.add_trial_column(name, ragged.get(name, name.replace("_", " ")), index=name in ragged)
    conditions = rng.choice([13, 38, 18], DANDI_TRIALS)
    versions = rng.integers(0, 3, DANDI_TRIALS)
    reached = []
    for trial in range(DANDI_TRIALS):
        angle = np.deg2rad({13: 23.0, 38: 168.5, 18: 326.6}[conditions[trial]])
        target = 120.0 * np.array([np.cos(angle), np.sin(angle)])
        shown = [target] if trial % 3 else [-target, target, np.array([0.0, 80.0])]  # 1 or 3 targets
        reached.append(target)
        nwb.add_trial(start_time=starts[trial], stop_time=stops[trial], trial_type=int(conditions[trial]),
                      trial_version=int(versions[trial]), maze_id=int(100 + conditions[trial] + versions[trial]),
                      success=trial != FAILED_TRIAL, target_on_time=starts[trial] + 0.2,
                      go_cue_time=onsets[trial] - 0.3, move_onset_time=onsets[trial], rt=0.3, delay=0.5,
                      num_targets=len(shown), num_barriers=2, active_target=1 if len(shown) == 3 else 0,
                      split="val" if trial % 4 == 3 else "train", target_pos=shown,
                      barrier_pos=[[10.0, 20.0, 5.0, 30.0], [-40.0, 0.0, 8.0, 8.0]])
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return {"onsets": onsets, "stamps": stamps, "velocity": velocity, "spikes": spikes, "conditions": conditions,
            "versions": versions, "reached": np.array(reached)}


def _expected_bins(written, trials):
    edges = np.asarray(DANDI_WINDOW[0] + DANDI_BIN_MS * np.arange(DANDI_BINS + 1)) / 1000.0
    counts, velocity = [], []
    for trial in trials:
        trial_edges = written["onsets"][trial] + edges
        lo, hi = trial_edges[:-1, None], trial_edges[1:, None]
        counts.append(np.stack([((times >= lo) & (times < hi)).sum(axis=1) for times in written["spikes"]], axis=1))
        inside = (written["stamps"] >= lo) & (written["stamps"] < hi)  # bins x samples
        velocity.append(inside @ written["velocity"] / inside.sum(axis=1, keepdims=True))
    return np.concatenate(counts), np.concatenate(velocity)


def test_reads_the_dandi_000128_layout(tmp_path):
    path = tmp_path / "sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb"
    written = _write_dandi_layout(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:  # the file holds what nlb_tools reads from MC_Maze
        nwbfile = io.read()
        table = nwbfile.trials.to_dataframe().reset_index().rename({"id": "trial_id", "stop_time": "end_time"}, axis=1)
        assert list(table.columns) == NLB_TRIAL_INFO
        assert {"spike_times", "obs_intervals", "heldout", "electrodes"} <= set(nwbfile.units.colnames)
        assert set(nwbfile.processing["behavior"].data_interfaces) == {"hand_vel", "hand_pos", "cursor_pos", "eye_pos"}
    session, trials = load_mc_maze(path, area=None, smooth_sd_bins=0)
    kept = [t for t in range(DANDI_TRIALS) if t not in (FAILED_TRIAL, NO_ONSET_TRIAL, LATE_TRIAL)]
    np.testing.assert_array_equal(trials.nwb_trial_id, kept)
    assert session.trial_length == DANDI_BINS and session.n_units == 12 and session.n_trials == len(kept)

    counts, velocity = _expected_bins(written, kept)
    assert counts.sum() > 1000
    np.testing.assert_array_equal(session.neural, counts)  # the binned spike counts, exactly
    np.testing.assert_allclose(session.velocity, velocity, rtol=1e-5, atol=1e-3)  # the bin means of hand_vel, mm/s
    np.testing.assert_array_equal(trials.trial_type, written["conditions"][kept])
    np.testing.assert_array_equal(trials.trial_version, written["versions"][kept])
    np.testing.assert_array_equal(trials.maze_id, 100 + written["conditions"][kept] + written["versions"][kept])
    np.testing.assert_allclose(trials.target_pos, written["reached"][kept])  # the active target of 1 or 3
    expected_angle = np.mod(np.degrees(np.arctan2(*written["reached"][kept].T[::-1])), 360)
    np.testing.assert_allclose(trials.angle, expected_angle, atol=1e-9)
    np.testing.assert_allclose(trials.move_onset_time, written["onsets"][kept])

    # the M1 array only: its 7 units, the same counts
    m1, _ = load_mc_maze(path, area="M1", smooth_sd_bins=0)
    np.testing.assert_array_equal(m1.neural, counts[:, :7])
    # smoothing (the default) keeps each unit's mass away from the window's edges
    smoothed, _ = load_mc_maze(path, area=None)
    assert smoothed.neural.shape == counts.shape
    np.testing.assert_allclose(smoothed.neural.sum(), counts.sum(), rtol=0.05)


def test_dandi_layout_velocity_in_another_stored_unit(tmp_path):
    # The same numbers stored with unit m/s and conversion 0.001 (NWB: data x conversion is in m/s): mm/s.
    reference = _write_dandi_layout(tmp_path / "mm.nwb")
    _write_dandi_layout(tmp_path / "m.nwb", velocity_unit="m/s", conversion=1e-3)
    a, _ = load_mc_maze(tmp_path / "mm.nwb", area=None, smooth_sd_bins=0)
    b, _ = load_mc_maze(tmp_path / "m.nwb", area=None, smooth_sd_bins=0)
    assert np.abs(reference["velocity"]).max() > 10
    np.testing.assert_allclose(b.velocity, a.velocity, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(b.neural, a.neural)
