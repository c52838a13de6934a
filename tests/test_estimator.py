import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from ner import NER, LabelLayout
from ner.data import synthetic_session
from ner.evaluation.decoding import decode_session

FAST = dict(max_iterations=20, batch_size=64, verbose=False, device="cpu", seed=0)


@pytest.fixture(scope="module")
def session():
    return synthetic_session(n_trials=48, n_neurons=24, seed=3)


def test_fit_transform_and_seed(session):
    first = NER(**FAST).fit(session.neural, session.labels)
    embedding = first.transform(session.neural)
    assert embedding.shape == (len(session.neural), 3)
    assert np.isfinite(embedding).all()
    again = NER(**FAST).fit(session.neural, session.labels).transform(session.neural)
    np.testing.assert_array_equal(embedding, again)
    other = NER(**{**FAST, "seed": 1}).fit(session.neural, session.labels)
    assert not np.allclose(other.transform(session.neural), embedding)
    assert len(first.solver_.log["total"]) == FAST["max_iterations"]


def test_loss_decreases_and_ranks_labels(session):
    model = NER(**{**FAST, "max_iterations": 300, "batch_size": 256})
    model.fit(session.train.neural, session.train.labels)
    losses = np.array(model.solver_.log["total"])
    assert losses[-30:].mean() < losses[:30].mean() - 0.05
    scores = decode_session(model.transform(session.train.neural), session.train.labels,
                            model.transform(session.test.neural), session.test.labels,
                            session.trial_length)
    assert scores["test_position_r2"] > 0.6


def test_save_load_round_trip(session, tmp_path):
    model = NER(**FAST).fit(session.neural, session.labels)
    path = tmp_path / "ner.pt"
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ner.pt"]  # no temporary left
    loaded = NER.load(path)
    assert type(loaded) is NER and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.transform(session.neural), model.transform(session.neural))
    checkpoint = torch.load(path, weights_only=True)  # plain types only
    assert checkpoint["args"]["positive_labels"] == "reference"


def test_load_puts_a_gpu_trained_model_where_it_is_told(session, tmp_path):
    model = NER(**FAST).fit(session.neural, session.labels)
    path = tmp_path / "ner.pt"
    model.save(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"]["device"] = "cuda"  # as a model trained on a GPU saves itself
    torch.save(checkpoint, path)
    loaded = NER.load(path, device="cpu")
    assert loaded.device == loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.transform(session.neural), model.transform(session.neural))


def test_load_rejects_foreign_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a NER checkpoint"):
        NER.load(path)


def test_save_unfitted_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        NER().save(tmp_path / "x.pt")


def test_sklearn_protocol(session):
    model = NER(temperature=2.0, positive_labels="own", **FAST)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and twin is not model
    twin.set_params(temperature=0.5)
    assert twin.temperature == 0.5 and model.temperature == 2.0
    pipeline = Pipeline([("ner", NER(**FAST)), ("decoder", LinearRegression())])
    search = GridSearchCV(pipeline, {"ner__temperature": [0.5, 1.0]}, cv=2)
    search.fit(session.neural, session.labels)
    scores = search.cv_results_["mean_test_score"]
    # Each temperature reached its clone: the two settings score differently.
    assert np.isfinite(scores).all() and scores[0] != scores[1]


def test_partial_fit_continues_and_adapt_swaps_input_layer(session):
    model = NER(**FAST)
    model.partial_fit(session.neural, session.labels)
    model.partial_fit(session.neural, session.labels)
    assert len(model.solver_.log["total"]) == 2 * FAST["max_iterations"]
    fewer = session.neural[:, :10]
    model.fit(fewer, session.labels, adapt=True)
    assert model.transform(fewer).shape == (len(fewer), 3)


def test_positive_labels_own_and_dense_search_train(session):
    for params in ({"positive_labels": "own"}, {"exact_search": False}):
        model = NER(**FAST, **params).fit(session.neural, session.labels)
        assert np.isfinite(model.transform(session.neural)).all()
    with pytest.raises(ValueError, match="positive_labels"):
        NER(**FAST, positive_labels="nearest").fit(session.neural, session.labels)


@pytest.mark.parametrize("mutate, message", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y), "X contains NaN"),
    (lambda X, y: (X, np.where(np.arange(y.size).reshape(y.shape) == 7, np.inf, y)), "y contains infinity"),
    (lambda X, y: (X, y[:, :2]), r"y has 2 column\(s\), the label layout expects 3 \(vx, vy, angle\)"),
    (lambda X, y: (X, y[:-1]), "samples but y has"),
    (lambda X, y: (X[:40], y[:40]), "fewer than batch_size"),
    (lambda X, y: (X, y.astype(np.int64)), "dtype int64"),
    (lambda X, y: (X[:, 0], y), "Expected 2D array"),
])
def test_bad_input_is_named(session, mutate, message):
    X, y = mutate(session.neural.copy(), session.labels.copy())
    with pytest.raises(ValueError, match=message):
        NER(**FAST).fit(X, y)


def test_configured_columns_must_exist(session):
    with pytest.raises(ValueError, match=r"names column\(s\) \[5\], but y has 3"):
        NER(**FAST, label_layout=LabelLayout(search=(0, 5))).fit(session.neural, session.labels)
    with pytest.raises(ValueError, match="label_layout must be a ner.LabelLayout"):
        NER(**FAST, label_layout=(0, 1)).fit(session.neural, session.labels)


def test_labels_of_any_width_with_one_layout(session, tmp_path):
    position = np.cumsum(session.labels[:, :2], axis=0) / 100  # 2-D position, no angle column
    model = NER(**FAST, label_layout=LabelLayout()).fit(session.neural, position)
    assert model.transform(session.neural).shape == (len(session.neural), 3)
    assert model.label_types_[0][1][1:] == (2,)  # CEBRA saw two continuous label columns
    one = NER(**FAST, label_layout=LabelLayout()).fit(session.neural, position[:, 0])  # 1-D, as sklearn allows
    assert len(one.solver_.log["total"]) == FAST["max_iterations"]
    model.save(tmp_path / "position.pt")
    loaded = NER.load(tmp_path / "position.pt")
    assert loaded.label_layout == LabelLayout()
    np.testing.assert_array_equal(loaded.transform(session.neural), model.transform(session.neural))


def test_dataframes_are_accepted(session):
    pandas = pytest.importorskip("pandas")
    frame = NER(**FAST).fit(pandas.DataFrame(session.neural), pandas.DataFrame(session.labels))
    arrays = NER(**FAST).fit(session.neural, session.labels)
    np.testing.assert_array_equal(frame.transform(pandas.DataFrame(session.neural)),
                                  arrays.transform(session.neural))


@pytest.mark.slow
def test_ner_beats_cebra_on_a_real_session(data_dir):
    # A short version of `ner demo --session Chewie_20161007` (the paper trains
    # 20000 steps; BENCHMARKS.md has those numbers).
    from ner.data import load_session
    from ner.demo import run_demo

    session = load_session("Chewie_20161007", area="M1", data_dir=data_dir)
    results = run_demo(session, iterations=1500, seed=0, device="cpu", verbose=False)
    ner, cebra = results["NER"], results["CEBRA"]
    assert ner["test_position_r2"] > 0.85
    assert ner["test_position_r2"] > cebra["test_position_r2"]
    assert ner["train_velocity_r2"] > cebra["train_velocity_r2"]
