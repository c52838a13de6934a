import hashlib
import re
import warnings

import numpy as np
import pytest
import scipy.io

from ner.data import (
    Session,
    available_sessions,
    load_session,
    synthetic_session,
    write_session_mat,
)
from ner.data.labels import direction_offsets

SUFFIX = "_neural_con_dis_index.mat"

# The data README's table: trials and units per area.
REAL_SESSIONS = {
    "Chewie_20150629": (172, {"M1": 49}),
    "Chewie_20150630": (172, {"M1": 44}),
    "Chewie_20160929": (208, {"M1": 74, "PMd": 114}),
    "Chewie_20161007": (168, {"M1": 70, "PMd": 137}),
    "Mihili_20140217": (206, {"M1": 44, "PMd": 104}),
    "Mihili_20140218": (225, {"M1": 38, "PMd": 121}),
    "Mihili_20140303": (208, {"M1": 52, "PMd": 66}),
    "Mihili_20140304": (203, {"M1": 39, "PMd": 76}),
    "Mihili_20140306": (217, {"M1": 43, "PMd": 86}),
    "Mihili_20140307": (216, {"M1": 26, "PMd": 66}),
    "Han_20171201": (292, {"S1": 70}),
    "Han_20171204": (251, {"S1": 83}),
    "Han_20171207": (244, {"S1": 72}),
}
EIGHT_DIRECTIONS = set(range(0, 360, 45))


def blank_session(n_trials, trial_length=40, **changes):
    bins = n_trials * int(trial_length)
    fields = dict(
        name="blank", area="M1", neural=np.zeros((bins, 2)), labels=np.zeros((bins, 3)), trial_length=trial_length
    )
    fields.update(changes)
    return Session(**fields)


def write_mat(path, **contents):
    scipy.io.savemat(path, contents)
    return path


def write_session_file(path, bins, velocity_bins=None, direction=None):
    """A session file with an M1 recording; lengths and directions can be made inconsistent."""
    direction = np.zeros((bins, 1)) if direction is None else direction
    velocity = np.zeros((velocity_bins or bins, 2))
    return write_mat(path, neural_M1=np.zeros((bins, 2)), continuous_index=velocity, discrete_index=direction)


# --- Session ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_trials", "n_train"), [(168, 134), (172, 137), (202, 161), (1026, 820), (10, 8), (2, 1)])
def test_split_is_floor_of_80_percent(n_trials, n_train):
    session = blank_session(n_trials)
    assert session.n_train_trials == n_train
    assert (session.train.n_trials, session.test.n_trials) == (n_train, n_trials - n_train)


def test_split_of_a_single_trial_is_refused():
    with pytest.raises(ValueError, match="1 trial.s. leave a split empty"):
        blank_session(1).train


def test_train_and_test_are_contiguous_trial_ranges():
    session = synthetic_session(n_trials=20, n_neurons=5, seed=3)
    train, test = session.train, session.test
    assert np.array_equal(np.concatenate([train.neural, test.neural]), session.neural)
    assert np.array_equal(np.concatenate([train.labels, test.labels]), session.labels)
    assert np.array_equal(np.unique(train.trial_ids), np.arange(16))
    assert np.array_equal(np.unique(test.trial_ids), np.arange(16, 20))
    assert train.neural.dtype == np.float32 and train.labels.dtype == np.float32


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"neural": np.zeros((80, 2, 1))}, "neural must be 2-D"),
        ({"labels": np.zeros((80, 2))}, r"session labels must have shape \(bins, 3\)"),
        ({"labels": np.zeros((40, 3))}, "session has 80 bins of samples but 40 of labels"),
        ({"neural": np.zeros((90, 2)), "labels": np.zeros((90, 3))}, "90 bins is not a whole"),
        ({"trial_length": 0, "neural": np.zeros((80, 2)), "labels": np.zeros((80, 3))},
         "trial_length must be a positive integer"),
        ({"trial_length": 2.5, "neural": np.zeros((80, 2)), "labels": np.zeros((80, 3))},
         "trial_length must be a positive integer"),
        ({"neural": np.full((80, 2), np.nan)}, "session samples holds 160 NaN/inf"),
        ({"labels": np.column_stack([np.zeros((80, 2)), np.full(80, 360.0)])}, r"angles must lie in \[0, 360\)"),
        ({"trial_ids": np.arange(80)}, "trial_ids must be constant within each block"),
        ({"trial_ids": np.zeros(79)}, r"trial_ids must have shape \(80,\)"),
    ],
)
def test_session_rejects_bad_input(changes, message):
    with pytest.raises(ValueError, match=message):
        blank_session(2, **changes)


# --- load_session errors (no real data needed) -------------------------------------------------------


def test_unknown_session_lists_what_is_there_and_how_to_fetch(tmp_path):
    write_session_mat(synthetic_session(n_trials=8, n_neurons=3), tmp_path / ("synthetic_seed0" + SUFFIX))
    with pytest.raises(FileNotFoundError, match="synthetic_seed0.*ner fetch Chewie_20161005"):
        load_session("Chewie_20161005", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="sessions that can be fetched: Chewie_20150313"):
        load_session("Nobody_20000101", data_dir=tmp_path)


def test_data_dir_comes_from_environment(tmp_path, monkeypatch):
    session = synthetic_session(n_trials=8, n_neurons=3)
    write_session_mat(session, tmp_path / (session.name + SUFFIX))
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path))
    assert load_session(session.name).n_trials == 8
    assert [(info.name, info.areas) for info in available_sessions()] == [(session.name, ("M1",))]


def test_truncated_file_names_the_file(tmp_path):
    path = write_session_mat(synthetic_session(n_trials=8, n_neurons=3), tmp_path / ("cut" + SUFFIX))
    raw = path.read_bytes()
    for keep in (0, 100, len(raw) // 2, len(raw) - 10):
        path.write_bytes(raw[:keep])
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*truncated or corrupt"):
            load_session(path)


def test_missing_keys_are_named(tmp_path):
    path = write_mat(tmp_path / ("x" + SUFFIX), neural_M1=np.zeros((40, 2)), continuous_index=np.zeros((40, 2)))
    with pytest.raises(ValueError, match="lacks the key.s. discrete_index .keys present: continuous_index, neural_M1"):
        load_session(path)


def test_missing_area_lists_areas_present(tmp_path):
    path = write_mat(
        tmp_path / ("x" + SUFFIX),
        neural_M1=np.zeros((40, 2)),
        neural_PMd=np.zeros((40, 2)),
        continuous_index=np.zeros((40, 2)),
        discrete_index=np.zeros((40, 1)),
    )
    with pytest.raises(ValueError, match="no recording of area 'S1': areas present are M1, PMd"):
        load_session(path, area="S1")
    assert load_session(path, area="pmd").area == "PMd"


def test_length_not_divisible_names_the_file(tmp_path):
    path = write_session_file(tmp_path / ("x" + SUFFIX), 90)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": 90 bins is not a whole"):
        load_session(path)


def test_mismatched_lengths_and_wrong_trial_length_are_caught(tmp_path):
    path = write_session_file(tmp_path / ("x" + SUFFIX), 80, velocity_bins=40)
    with pytest.raises(ValueError, match="with one T"):
        load_session(path)
    directions = np.repeat([0.0, 90.0, 180.0, 270.0], 20)[:, None]  # 20-bin trials, but no t_dur: read as 40
    path = write_session_file(tmp_path / ("y" + SUFFIX), 80, direction=directions)
    with pytest.raises(ValueError, match="discrete_index changes within a trial of 40 bins"):
        load_session(path)


# --- real sessions -------------------------------------------------------------------------------------


def test_available_sessions_lists_real_files(data_dir):
    found = available_sessions(data_dir)
    assert found
    for info in found:
        assert info.areas == tuple(REAL_SESSIONS[info.name][1]), info.name
        assert info.path == data_dir / (info.name + SUFFIX)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_SESSIONS))
def test_real_session_shapes_and_angles(data_dir, name):
    if not (data_dir / (name + SUFFIX)).is_file():
        pytest.skip(f"{name} not in {data_dir}")
    n_trials, areas = REAL_SESSIONS[name]
    trial_length = 35 if name.startswith("Han") else 40
    for area, units in areas.items():
        session = load_session(name, area=area, data_dir=data_dir)
        assert (session.n_trials, session.n_units, session.trial_length) == (n_trials, units, trial_length)
        assert session.neural.shape == (n_trials * trial_length, units)
        # All 8 directions, 45 degrees apart: catches an unmapped -180..135 range, Mihili_20140218's +180
        # landing apart from -180, and Han's degrees multiplied by 45 again.
        assert set(np.unique(session.angle).tolist()) == EIGHT_DIRECTIONS
        per_trial = session.angle.reshape(n_trials, trial_length)
        assert (per_trial == per_trial[:, :1]).all()
        assert 5 < np.abs(session.velocity).max() < 1000  # cm/s times 10


def test_quirks_han_and_mihili_20140218(data_dir):
    for name, area in (("Han_20171204", "S1"), ("Mihili_20140218", "M1")):
        if not (data_dir / (name + SUFFIX)).is_file():
            pytest.skip(f"{name} not in {data_dir}")
        raw = scipy.io.loadmat(data_dir / (name + SUFFIX), mat_dtype=True)["discrete_index"].ravel()
        session = load_session(name, area=area, data_dir=data_dir)
        assert set(np.unique(session.angle).tolist()) == EIGHT_DIRECTIONS
        assert np.array_equal(session.angle, np.mod(raw, 360).astype(np.float32))
    assert load_session("Han_20171204", area="S1", data_dir=data_dir).trial_length == 35


def test_mihili_20140218_labels_are_45_degrees_off_the_reach_and_can_be_turned_onto_it(data_dir):
    name = "Mihili_20140218"
    if not (data_dir / (name + SUFFIX)).is_file():
        pytest.skip(f"{name} not in {data_dir}")
    with pytest.warns(UserWarning, match=r"Mihili_20140218 M1: the direction labels are -44\.5 degrees off"):
        recorded = load_session(name, area="M1", data_dir=data_dir)
    offsets = direction_offsets(recorded.labels, recorded.trial_length)
    assert -48 < np.percentile(offsets, 25) and np.percentile(offsets, 75) < -42
    moved = load_session(name, area="M1", data_dir=data_dir, directions="movement")
    assert abs(moved.direction_offset) < 2
    np.testing.assert_array_equal(moved.angle, np.mod(recorded.angle - 45, 360))
    np.testing.assert_array_equal(moved.neural, recorded.neural)
    np.testing.assert_array_equal(moved.velocity, recorded.velocity)
    # Every other session's labels are the reach: no warning, and "movement" changes nothing.
    other = "Mihili_20140217"
    if (data_dir / (other + SUFFIX)).is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            session = load_session(other, area="M1", data_dir=data_dir)
        assert abs(session.direction_offset) < 2
        np.testing.assert_array_equal(load_session(other, "M1", data_dir, directions="movement").labels, session.labels)
    with pytest.raises(ValueError, match="directions must be one of recorded, movement"):
        load_session(name, area="M1", data_dir=data_dir, directions="reach")


def test_sha256_and_path_recorded(data_dir):
    path = sorted(data_dir.glob("*" + SUFFIX))[0]
    session = load_session(path, area=available_sessions(data_dir)[0].areas[0])
    assert session.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert session.path == path and session.name == path.name[: -len(SUFFIX)]


def test_truncated_real_file(data_dir, tmp_path):
    source = sorted(data_dir.glob("*" + SUFFIX))[0]
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    with pytest.raises(ValueError, match=re.escape(str(copy))):
        load_session(copy)


# --- the original paper's cached splits ---------------------------------------------------------------


def cached_splits(reference_dir):
    """Session name -> (train labels, test labels) from the original's cached Chewie M1 embeddings."""
    splits = {}
    for path in sorted((reference_dir / "upstream_data_NER" / "M1 4+6+6").glob("*_Chewie/NPZ/Chewie_*_M1.npz")):
        if path.parts[-3].startswith("piVAE"):
            continue  # piVAE dropped trials: not the paper's split
        date = path.name.split("_")[1]
        name = "Chewie_" + (date if len(date) == 8 else "20" + date)
        with np.load(path) as cache:
            splits.setdefault(name, (cache["continuous_index_train"], cache["continuous_index_test"]))
    if not splits:
        pytest.skip(f"no cached Chewie splits under {reference_dir}")
    return splits


def test_split_rule_reproduces_every_cached_split(reference_dir):
    splits = cached_splits(reference_dir)
    assert len(splits) >= 10
    for name, (train, test) in splits.items():
        session = blank_session((len(train) + len(test)) // 40)
        assert session.n_train_trials * 40 == len(train), name


@pytest.mark.slow
def test_split_labels_equal_cached_labels(data_dir, reference_dir):
    checked = 0
    for name, (train, test) in cached_splits(reference_dir).items():
        if not (data_dir / (name + SUFFIX)).is_file():
            continue
        session = load_session(name, data_dir=data_dir)
        np.testing.assert_allclose(session.train.labels, train, rtol=1e-6, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(session.test.labels, test, rtol=1e-6, atol=1e-4, err_msg=name)
        checked += 1
    assert checked >= 1
