"""piVAE: the GIN flow's parts, the Gaussian algebra, and fits on a small synthetic session."""

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ner.data import synthetic_session
from ner.evaluation.decoding import decode_session
from ner.methods.pivae import (
    AffineCoupling,
    GINDecoder,
    LabelPrior,
    PiVAE,
    gaussian_kl,
    gaussian_product,
)


@pytest.fixture(scope="module")
def session():
    return synthetic_session(n_trials=48, n_neurons=20, seed=3)


@pytest.fixture(scope="module")
def fitted(session):
    return PiVAE(device="cpu", seed=0).fit(session.train.neural, session.train.labels)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Draw every weight afresh: the couplings start as the identity, which would make the flow tests trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


# --- the flow's parts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_features", [2, 5, 6])
def test_coupling_preserves_volume_and_inverts(n_features):
    layer = randomise(AffineCoupling(n_features, hidden=8).double())
    x = torch.randn(4, n_features, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for point in x:
        jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0], point)
        assert abs(torch.linalg.slogdet(jacobian).logabsdet.item()) < 1e-5
        # Not volume preserving because it does nothing: the updated half really is scaled.
        updated = n_features - layer.split
        scales = torch.diagonal(jacobian[:updated, layer.split:])
        if updated > 1:
            assert (scales - 1).abs().max() > 0.05
    with torch.no_grad():
        np.testing.assert_allclose(layer.inverse(layer(x)).numpy(), x.numpy(), atol=1e-10)
        np.testing.assert_allclose(layer(layer.inverse(x)).numpy(), x.numpy(), atol=1e-10)


def test_coupling_needs_two_features():
    with pytest.raises(ValueError, match="needs 2 or more features, got 1"):
        AffineCoupling(1, hidden=4)


def test_decoder_lifts_injectively_to_positive_rates():
    torch.manual_seed(0)
    decoder = randomise(GINDecoder(n_latent=3, n_units=20, hidden=16, n_blocks=2))
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lifted, rates = decoder.lift(z), decoder(z)
    # z is read back from the lift's first coordinates, so the lift is injective.
    assert lifted.shape == (50, 20) and torch.equal(lifted[:, :3], z)
    assert rates.shape == (50, 20) and (rates > 0).all()
    assert torch.cdist(rates, rates)[~torch.eye(50, dtype=bool)].min() > 1e-3  # distinct latents, distinct rates
    assert all(sorted(p.tolist()) == list(range(20)) for p in decoder.permutations)
    assert not torch.equal(decoder.permutations[0], decoder.permutations[1])
    with pytest.raises(ValueError, match="needs more than 3 units, got 3"):
        GINDecoder(n_latent=3, n_units=3, hidden=4, n_blocks=1)


def test_gaussian_product_and_kl_closed_forms():
    # N(1, 1) x N(3, 3): precision 1 + 1/3, so variance 3/4 and mean 3/4 * (1 + 3/3) = 1.5;
    # N(0, 4) x N(2, 4): variance 2, mean 1.
    mean, logvar = gaussian_product(torch.tensor([[1.0, 0.0]]), torch.log(torch.tensor([[1.0, 4.0]])),
                                    torch.tensor([[3.0, 2.0]]), torch.log(torch.tensor([[3.0, 4.0]])))
    np.testing.assert_allclose(mean.numpy(), [[1.5, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(torch.exp(logvar).numpy(), [[0.75, 2.0]], rtol=1e-6)
    # KL(N(0, 1) || N(1, 4)) = (log 4 + (1 + 1) / 4 - 1) / 2; a Gaussian against itself gives 0.
    kl = gaussian_kl(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.log(torch.full((1, 1), 4.0)))
    assert kl.item() == pytest.approx(0.5 * (math.log(4.0) + 0.5 - 1.0), rel=1e-6)
    assert gaussian_kl(mean, logvar, mean, logvar).abs().max().item() < 1e-7


def test_label_prior_reads_direction_and_velocity():
    torch.manual_seed(0)
    prior = LabelPrior(n_latent=3, hidden=8)
    classes, velocity = torch.tensor([0, 4, 0]), torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    with torch.no_grad():
        mean, logvar = prior(classes, velocity)
    assert mean.shape == logvar.shape == (3, 3)
    assert not torch.allclose(mean[0], mean[1])  # at rest, the direction alone separates the priors
    assert not torch.allclose(mean[0], mean[2])  # the velocity moves them within a direction


# --- the estimator -------------------------------------------------------------------------------------------------

def test_training_lowers_the_loss(fitted):
    history = np.asarray(fitted.loss_history_)
    assert len(history) == 50 and np.isfinite(history).all()
    assert history[-5:].mean() < history[:5].mean() - 1.0


def test_transform_ignores_labels_posterior_uses_them(fitted, session):
    test = session.test
    assert list(inspect.signature(fitted.transform).parameters) == ["X"]

    def refuse(*_):
        raise AssertionError("the label prior ran while embedding rates alone")

    hook = fitted.network_.prior.register_forward_pre_hook(refuse)
    embedding = fitted.transform(test.neural)
    hook.remove()
    np.testing.assert_array_equal(fitted.transform(test.neural), embedding)
    assert embedding.shape == (len(test.neural), 3)

    informed = fitted.posterior_mean(test.neural, test.labels)
    rotated = test.labels.copy()
    rotated[:, 2] = np.mod(rotated[:, 2] + 90.0, 360.0)  # the same bins, told another direction
    slowed = test.labels * np.array([0.5, 0.5, 1.0])
    assert not np.allclose(informed, embedding)
    assert not np.allclose(fitted.posterior_mean(test.neural, rotated), informed)
    assert not np.allclose(fitted.posterior_mean(test.neural, slowed), informed)


def test_seed_fixes_the_fit(session):
    train, test = session.train, session.test
    embeddings = [PiVAE(epochs=2, device="cpu", seed=seed).fit(train.neural, train.labels).transform(test.neural)
                  for seed in (4, 4, 5)]
    np.testing.assert_array_equal(embeddings[0], embeddings[1])
    assert not np.allclose(embeddings[0], embeddings[2])
    # The fit leaves the caller's torch stream where it was.
    torch.manual_seed(9)
    expected = torch.rand(1)
    torch.manual_seed(9)
    PiVAE(epochs=1, device="cpu", seed=4).fit(train.neural, train.labels)
    assert torch.equal(torch.rand(1), expected)


def test_embeddings_decode_the_reach(fitted, session):
    train, test = session.train, session.test
    informed_train = fitted.posterior_mean(train.neural, train.labels)
    informed = decode_session(informed_train, train.labels, fitted.posterior_mean(test.neural, test.labels),
                              test.labels, session.trial_length)
    free = decode_session(fitted.transform(train.neural), train.labels, fitted.transform(test.neural),
                          test.labels, session.trial_length)
    # Control: the same training embedding, its trials shuffled against their labels.
    order = np.random.default_rng(0).permutation(train.n_trials)
    shuffled = informed_train.reshape(train.n_trials, session.trial_length, -1)[order].reshape(informed_train.shape)
    control = decode_session(shuffled, train.labels, fitted.posterior_mean(test.neural, test.labels), test.labels,
                             session.trial_length)
    # Seeds 0-3 reached position R^2 0.77-0.92 (informed) and 0.66-0.86 (label-free).
    assert informed["test_position_r2"] > 0.6 and informed["test_velocity_r2"] > 0.5
    assert informed["test_peak_accuracy"] > 0.9
    assert informed["test_position_r2"] > control["test_position_r2"] + 0.3
    assert free["test_position_r2"] > 0.4


def test_sklearn_conventions_and_bad_settings(session):
    model = PiVAE(epochs=7, n_blocks=3, seed=None)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(window=1).window == 1
    X, y = session.train.neural, session.train.labels
    with pytest.raises(NotFittedError):
        model.posterior_mean(X, y)
    for setting, message in (({"epochs": 0}, "epochs must be a positive integer, got 0"),
                             ({"window": 2.5}, "window must be a positive integer, got 2.5"),
                             ({"learning_rate": -1.0}, "learning_rate must be positive")):
        with pytest.raises(ValueError, match=message):
            PiVAE(device="cpu", **setting).fit(X, y)
    with pytest.raises(ValueError, match="needs more than 3 units, got 2"):
        PiVAE(epochs=1, device="cpu").fit(X[:, :2], y)
    fitted = PiVAE(epochs=1, window=1, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="has 19 columns, 20 expected"):
        fitted.posterior_mean(X[:, :19], y)
    with pytest.raises(ValueError, match="embedded has 40 bins of samples but"):
        fitted.posterior_mean(X[:40], y)
