import copy

import cebra
import cebra.data
import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from ner import NER, LabelLayout
from ner.data import synthetic_session
from ner.model.multisession import MultiSessionRankLoader
from ner.model.sampling import seeded

FAST = dict(max_iterations=10, batch_size=64, verbose=False, device="cpu", seed=0)
UNITS = (20, 30, 25)  # two training sessions and one held out, each with its own units


@pytest.fixture(scope="module")
def sessions():
    return [synthetic_session(n_trials=48, n_neurons=units, seed=number)
            for number, units in enumerate(UNITS, start=1)]


def _neural(sessions):
    return [session.neural for session in sessions]


def _labels(sessions):
    return [session.labels for session in sessions]


@pytest.fixture(scope="module")
def trained(sessions):
    """Two sessions trained long enough for their velocities to be linearly decodable."""
    model = NER(**{**FAST, "max_iterations": 100, "learning_rate": 3e-3})
    return model.fit(_neural(sessions[:2]), _labels(sessions[:2]))


def _velocity_decoder(model, sessions):
    """A linear decoder of the velocities from the shared space, fitted on every session."""
    embeddings = [model.transform(s.neural, session_id=i) for i, s in enumerate(sessions)]
    return LinearRegression().fit(np.concatenate(embeddings),
                                  np.concatenate([s.labels[:, :2] for s in sessions]))


def test_transform_per_session_with_different_unit_counts(trained, sessions):
    assert trained.num_sessions == 2 and trained.n_features_in_ == [20, 30]
    for number, session in enumerate(sessions[:2]):
        embedding = trained.transform(session.neural, session_id=number)
        assert embedding.shape == (len(session.neural), 3) and np.isfinite(embedding).all()
    with pytest.raises(ValueError, match="requires an input of shape"):
        trained.transform(sessions[0].neural, session_id=1)  # 20 units into the 30-unit encoder


def test_loss_decreases_and_velocities_decode_in_the_shared_space(trained, sessions):
    losses = np.array(trained.solver_.log["total"])
    assert len(losses) == 100
    assert losses[-10:].mean() < losses[:10].mean() - 0.05
    decoder = _velocity_decoder(trained, sessions[:2])
    for number, session in enumerate(sessions[:2]):
        score = decoder.score(trained.transform(session.neural, session_id=number),
                              session.labels[:, :2])
        assert score > 0.5, (number, score)


@pytest.mark.parametrize("positives", ["across", "within"])
def test_same_seed_same_embeddings_other_seed_other(sessions, positives):
    def embed(seed):
        model = NER(**{**FAST, "seed": seed}, multisession_positives=positives)
        model.fit(_neural(sessions[:2]), _labels(sessions[:2]))
        return [model.transform(s.neural, session_id=i) for i, s in enumerate(sessions[:2])]

    first, again, other = embed(0), embed(0), embed(1)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def test_other_sampling_settings_train(sessions):
    for params in ({"positive_labels": "own"}, {"exact_search": False},
                   {"multisession_positives": "within", "positive_labels": "own"}):
        model = NER(**FAST, **params).fit(_neural(sessions[:2]), _labels(sessions[:2]))
        assert len(model.solver_.log["total"]) == FAST["max_iterations"]
        assert np.isfinite(model.transform(sessions[1].neural, session_id=1)).all()


def _loader(sessions, positives, seed=0, batch_size=32):
    dataset = cebra.data.DatasetCollection(  # a generator, which may also yield one session
        cebra.data.TensorDataset(torch.from_numpy(s.neural).float(),
                                 continuous=torch.from_numpy(s.labels).float())
        for s in sessions)
    return MultiSessionRankLoader(dataset=dataset, batch_size=batch_size, num_steps=1,
                                  time_offset=1, search_columns=(0, 1), positives=positives,
                                  seed=seed)


def _pairs(loader, batch_size=32):
    """Each flat reference's session and velocity, and its positive's."""
    index = loader.get_indices(batch_size)
    count = len(loader.sessions)
    velocity = [s.dataset.continuous_index[:, :2] for s in loader.sessions]
    flat_velocity = torch.cat([velocity[s][index.positive[s]] for s in range(count)])
    reference_velocity = torch.cat([velocity[s][index.reference[s]] for s in range(count)])
    order = index.index_reversed
    assert sorted(order.tolist()) == list(range(count * batch_size))  # a permutation
    return (torch.arange(count).repeat_interleave(batch_size), reference_velocity,
            order // batch_size, flat_velocity[order], index)


def test_across_positives_lie_in_another_session_near_by_label(sessions):
    loader = _loader(sessions, "across")
    reference_session, reference, positive_session, positive, index = _pairs(loader)
    assert (positive_session != reference_session).all()
    assert index.positive.shape == (3, 32)  # each session gets batch_size positives
    # Near the reference in velocity: far nearer than a shuffled pairing.
    near = (reference - positive).abs().sum(1).mean()
    shuffled = (reference - positive[torch.randperm(len(positive))]).abs().sum(1).mean()
    assert near < 0.3 * shuffled
    # Seeded: the same seed draws the same indices, another seed others.
    again = _loader(sessions, "across").get_indices(32)
    assert torch.equal(index.reference, again.reference) and torch.equal(index.positive, again.positive)
    assert not torch.equal(index.positive, _loader(sessions, "across", seed=1).get_indices(32).positive)


def test_within_positives_lie_in_the_same_session(sessions):
    reference_session, reference, positive_session, positive, _ = _pairs(_loader(sessions, "within"))
    assert (positive_session == reference_session).all()
    shuffled = (reference - positive[torch.randperm(len(positive))]).abs().sum(1).mean()
    assert (reference - positive).abs().sum(1).mean() < 0.3 * shuffled


def test_save_load_round_trip(trained, sessions, tmp_path):
    path = tmp_path / "multi.pt"
    trained.save(path)
    loaded = NER.load(path)
    assert loaded.get_params() == trained.get_params() and loaded.num_sessions == 2
    for number, session in enumerate(sessions[:2]):
        np.testing.assert_array_equal(loaded.transform(session.neural, session_id=number),
                                      trained.transform(session.neural, session_id=number))
    assert torch.equal(loaded.anchor_embeddings_, trained.anchor_embeddings_)
    assert torch.load(path, weights_only=True)["args"]["multisession_positives"] == "across"


def test_add_session_trains_only_the_new_encoder_into_the_shared_space(trained, sessions, tmp_path):
    model = copy.deepcopy(trained)
    old = [{k: v.clone() for k, v in encoder.state_dict().items()} for encoder in model.model_]
    old_embeddings = [model.transform(s.neural, session_id=i) for i, s in enumerate(sessions[:2])]
    new = sessions[2]

    assert model.add_session(new.neural, new.labels, max_iterations=200) == 2

    for before, encoder in zip(old, model.model_[:2]):
        after = encoder.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[key], after[key]) for key in before)
    for number, (session, embedding) in enumerate(zip(sessions[:2], old_embeddings)):
        np.testing.assert_array_equal(model.transform(session.neural, session_id=number), embedding)
    assert model.num_sessions == 3 and model.n_features_in_ == [20, 30, 25]

    # The training sessions' decoder reads the new session's velocities: far better than from the
    # untrained encoder (the same initialisation) and about as well as from the training sessions.
    decoder = _velocity_decoder(trained, sessions[:2])
    adapted = decoder.score(model.transform(new.neural, session_id=2), new.labels[:, :2])
    untrained = seeded(trained.seed, lambda: cebra.models.init(
        trained.model_architecture, num_neurons=25, num_units=trained.num_hidden_units,
        num_output=trained.output_dimension)).eval()
    with torch.no_grad():
        before = untrained(torch.from_numpy(new.neural).float()).numpy()
    assert adapted > 0.4 and adapted > decoder.score(before, new.labels[:, :2]) + 0.3

    path = tmp_path / "adapted.pt"
    model.save(path)
    loaded = NER.load(path)
    for number, session in enumerate(sessions):
        np.testing.assert_array_equal(loaded.transform(session.neural, session_id=number),
                                      model.transform(session.neural, session_id=number))
    # The anchors travel with the model: a loaded one takes a further session too.
    assert loaded.add_session(new.neural[:, :10], new.labels, max_iterations=2) == 3
    assert loaded.transform(new.neural[:, :10], session_id=3).shape == (len(new.neural), 3)


def test_add_session_refuses_what_it_cannot_align(trained, sessions):
    single = NER(**FAST).fit(sessions[0].neural, sessions[0].labels)
    with pytest.raises(ValueError, match="needs a fitted multi-session model"):
        single.add_session(sessions[2].neural, sessions[2].labels)
    with pytest.raises(ValueError, match="needs a fitted multi-session model"):
        NER(**FAST).add_session(sessions[2].neural, sessions[2].labels)
    wide = NER(**FAST, label_layout=LabelLayout()).fit(_neural(sessions[:2]), _labels(sessions[:2]))
    with pytest.raises(ValueError, match=r"y has 2 label column\(s\), the model was fitted on 3"):
        wide.add_session(sessions[2].neural, sessions[2].labels[:, :2])


def test_add_session_takes_a_few_calibration_trials_with_a_smaller_batch(trained, sessions):
    model = copy.deepcopy(trained)
    few = sessions[2].neural[:40], sessions[2].labels[:40]  # one trial: fewer samples than the batch
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        model.add_session(*few, max_iterations=2)
    assert model.add_session(*few, max_iterations=2, batch_size=40) == 2
    assert model.transform(sessions[2].neural, session_id=2).shape == (len(sessions[2].neural), 3)


def _sessions_with(sessions, number, X=None, y=None):
    neural, labels = _neural(sessions[:2]), _labels(sessions[:2])
    neural[number] = neural[number] if X is None else X(neural[number])
    labels[number] = labels[number] if y is None else y(labels[number])
    return neural, labels


@pytest.mark.parametrize("inputs, params, message", [
    (lambda s: _sessions_with(s, 1, y=lambda y: y[:, :2]), {"label_layout": LabelLayout()},
     r"labels differ in width: y has \[3, 2\] column\(s\) per session"),
    (lambda s: _sessions_with(s, 1, y=lambda y: y[:, :2]), {},
     r"labels differ in width"),
    (lambda s: _sessions_with(s, 1, X=lambda X: X[:0], y=lambda y: y[:0]), {},
     r"session 1 is empty \(0 samples\)"),
    (lambda s: _sessions_with(s, 1, X=lambda X: X[:40], y=lambda y: y[:40]), {},
     "session 1: X has 40 samples, fewer than batch_size=64"),
    (lambda s: _sessions_with(s, 0, y=lambda y: y[:-1]), {},
     "session 0: X has 1920 samples but y has 1919"),
    (lambda s: (_neural(s[:2]), _labels(s[:1])), {},
     r"X holds 2 session\(s\) but y holds 1"),
    (lambda s: (_neural(s[:2]), s[0].labels), {},
     "y must be a list of as many label arrays"),
    (lambda s: ([], []), {}, r"X holds 0 session\(s\); a multi-session fit takes a list of two"),
    (lambda s: (_neural(s[:1]), _labels(s[:1])), {}, r"X holds 1 session\(s\)"),
    (lambda s: (_neural(s[:2]), _labels(s[:2])), {"multisession_positives": "nearest"},
     "multisession_positives must be 'across' or 'within'"),
])
def test_bad_sessions_are_named(sessions, inputs, params, message):
    X, y = inputs(sessions)
    with pytest.raises(ValueError, match=message):
        NER(**FAST, **params).fit(X, y)


def test_across_needs_another_session(sessions):
    with pytest.raises(ValueError, match="'across' draws positives from another session, but there is 1"):
        _loader(sessions[:1], "across")
    assert _loader(sessions[:1], "within").get_indices(32).positive.shape == (1, 32)


@pytest.mark.parametrize("session_id, message", [
    (None, "holds 2 sessions, one encoder each: pass session_id"),
    (2, "session_id=2 is out of range: this NER model holds 2 sessions, 0 to 1"),
    (-1, "session_id=-1 is out of range"),
    ("0", "session_id='0' is out of range"),
    (True, "session_id=True is out of range"),
])
def test_bad_session_id_is_named(trained, sessions, session_id, message):
    with pytest.raises(ValueError, match=message):
        trained.transform(sessions[0].neural, session_id=session_id)


def test_single_session_model_takes_no_session_id(sessions):
    model = NER(**FAST).fit(sessions[0].neural, sessions[0].labels)
    np.testing.assert_array_equal(model.transform(sessions[0].neural, session_id=0),
                                  model.transform(sessions[0].neural))
    with pytest.raises(ValueError, match="fitted on a single session"):
        model.transform(sessions[0].neural, session_id=1)


def test_restarts_keep_the_fit_whose_training_loss_ends_lowest(sessions, tmp_path):
    from ner.model.estimator import _restart_seeds

    X, y = _neural(sessions[:2]), _labels(sessions[:2])
    seeds = _restart_seeds(0, 3)
    assert seeds[0] == 0 and len(set(seeds)) == 3
    plain = [NER(**{**FAST, "seed": seed}).fit(X, y) for seed in seeds]
    model = NER(**FAST, restarts=3).fit(X, y)
    assert model.restart_losses_ == [fit.restart_losses_[0] for fit in plain]
    assert len(set(model.restart_losses_)) == 3
    kept = plain[int(np.argmin(model.restart_losses_))]
    assert model.get_params()["seed"] == 0  # the parameters stay as given
    for number, session in enumerate(sessions[:2]):
        np.testing.assert_array_equal(model.transform(session.neural, session_id=number),
                                      kept.transform(session.neural, session_id=number))
    model.save(tmp_path / "restarts.pt")
    assert NER.load(tmp_path / "restarts.pt").restart_losses_ == model.restart_losses_


@pytest.mark.parametrize("restarts", [0, -2, 1.5, True, "3"])
def test_bad_restarts_are_named(sessions, restarts):
    with pytest.raises(ValueError, match=f"restarts must be a positive integer, got {restarts!r}"):
        NER(**FAST, restarts=restarts).fit(_neural(sessions[:2]), _labels(sessions[:2]))
