"""piVAE (Zhou & Wei 2020) in PyTorch: a VAE with a label-conditioned prior and a GIN-flow decoder.

Model, per time bin t with rates x_t (units) and labels u_t = (vx, vy, reach angle):

- label prior p(z | u): a diagonal Gaussian whose mean and log-variance are the sum of a per-direction
  lookup table (the reach angle is one of 8 classes: piVAE's prior for discrete labels) and an MLP of
  the velocity standardised on the training set (piVAE's prior for continuous labels). Both parts are
  kept because they carry different things: the direction is known before the hand moves (PMd is
  tuned to it while velocity is still zero), and velocity traces the reach within the trial;
- encoder q(z | x): an MLP of the ``window`` bins around t, flattened, giving a Gaussian (mean,
  log-variance). ``window=1`` is piVAE's single-bin encoder;
- posterior q(z | x, u) ∝ q(z | x) p(z | u), a product of Gaussians (precision-weighted);
- decoder: a GIN flow. z (n_latent) is lifted injectively to the n units as (z, g(z)) with g an MLP,
  then passed through GIN blocks (a fixed random permutation, then two affine couplings whose
  log-scales are re-centred to sum zero, so each preserves volume); a softplus gives Poisson rates.

Training maximises the ELBO: Poisson log-likelihood of x_t at z ~ q(z | x, u) (reparameterised) minus
KL(q(z | x, u) || p(z | u)), with Adam. The defaults are the NER paper's run (its Fig. 3 notebook):
the conv-piVAE variant with a 10-bin encoder window, 60 hidden units, 2 GIN blocks, Poisson
observations, learning rate 2.5e-4, 50 epochs of batches of 200 bins, one fit per session; the paper
embedded with the label-informed posterior mean. That run fed the angle to the prior MLP as a number
(in degrees); here it is a class, which is what it is.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from ner.data.labels import N_DIRECTIONS, check_paired, check_samples, direction_classes


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


class LabelPrior(nn.Module):
    """p(z | u): (mean, log-variance) = table[direction class] + MLP(standardised velocity)."""

    def __init__(self, n_latent: int, hidden: int):
        super().__init__()
        self.table = nn.Embedding(N_DIRECTIONS, 2 * n_latent)
        self.velocity = _mlp(2, hidden, 2 * n_latent)

    def forward(self, classes: torch.Tensor, velocity: torch.Tensor):
        return (self.table(classes) + self.velocity(velocity)).chunk(2, dim=1)


class AffineCoupling(nn.Module):
    """GIN coupling: x = (x1, x2) -> (x2 * exp(s(x1)) + t(x1), x1), the log-scales s summing to zero.

    The Jacobian is a permuted triangular matrix with diagonal (exp(s), 1, ..., 1), so log|det J| =
    sum(s) = 0: the layer preserves volume, and it inverts in closed form. The output puts the updated
    half first, so the next coupling updates the half this one kept.
    """

    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        if n_features < 2:
            raise ValueError(f"a coupling layer splits its input in two: it needs 2 or more features, got {n_features}")
        self.split = n_features // 2
        self.net = _mlp(self.split, hidden, 2 * (n_features - self.split))
        # Start as a plain swap of halves, so the flow first passes the lifted latent through unchanged.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: torch.Tensor):
        raw, shift = self.net(kept).chunk(2, dim=1)
        log_scale = torch.tanh(raw)  # bounded, so exp(log_scale) cannot overflow early in training
        return log_scale - log_scale.mean(dim=1, keepdim=True), shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, changed = x[:, :self.split], x[:, self.split:]
        log_scale, shift = self._scale_shift(kept)
        return torch.cat([changed * torch.exp(log_scale) + shift, kept], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        updated, kept = y[:, :y.shape[1] - self.split], y[:, y.shape[1] - self.split:]
        log_scale, shift = self._scale_shift(kept)
        return torch.cat([kept, (updated - shift) * torch.exp(-log_scale)], dim=1)


class GINDecoder(nn.Module):
    """Rates from latents: lift z to (z, g(z)), then ``n_blocks`` GIN blocks, then a softplus.

    A block is a fixed random permutation followed by two couplings (each updates one half). The lift
    is injective (z is read back from its first coordinates) and every block is a bijection, so distinct
    latents give distinct pre-softplus outputs: piVAE's identifiable decoder. The permutations come
    from torch's random stream, which :meth:`PiVAE.fit` seeds.
    """

    def __init__(self, n_latent: int, n_units: int, hidden: int, n_blocks: int):
        super().__init__()
        if n_units <= n_latent:
            raise ValueError(f"the GIN decoder lifts {n_latent} latent dimensions to the units: it needs more "
                             f"than {n_latent} units, got {n_units}")
        self.lift_net = _mlp(n_latent, hidden, n_units - n_latent)
        self.couplings = nn.ModuleList(AffineCoupling(n_units, hidden) for _ in range(2 * n_blocks))
        self.register_buffer("permutations", torch.stack([torch.randperm(n_units) for _ in range(n_blocks)]))

    def lift(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.lift_net(z)], dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.lift(z)
        for block, permutation in enumerate(self.permutations):
            h = h[:, permutation]
            for coupling in self.couplings[2 * block:2 * block + 2]:
                h = coupling(h)
        return F.softplus(h)


class _Network(nn.Module):
    def __init__(self, n_inputs: int, n_units: int, n_latent: int, hidden: int, n_blocks: int):
        super().__init__()
        self.encoder = _mlp(n_inputs, hidden, 2 * n_latent)
        self.prior = LabelPrior(n_latent, hidden)
        self.decoder = GINDecoder(n_latent, n_units, hidden, n_blocks)

    def encode(self, inputs):
        return self.encoder(inputs).chunk(2, dim=1)


def gaussian_product(mean_x, logvar_x, mean_u, logvar_u):
    """Product of two diagonal Gaussians, renormalised: (mean, log-variance), precision-weighted."""
    precision_x, precision_u = torch.exp(-logvar_x), torch.exp(-logvar_u)
    variance = 1.0 / (precision_x + precision_u)
    return variance * (mean_x * precision_x + mean_u * precision_u), torch.log(variance)


def gaussian_kl(mean, logvar, mean_prior, logvar_prior) -> torch.Tensor:
    """KL(N(mean, var) || N(mean_prior, var_prior)) of diagonal Gaussians, summed over dimensions."""
    return 0.5 * (logvar_prior - logvar + (torch.exp(logvar) + (mean - mean_prior) ** 2) / torch.exp(logvar_prior)
                  - 1.0).sum(dim=1)


class PiVAE(TransformerMixin, BaseEstimator):
    """piVAE baseline: MLP encoder, label prior (direction table + velocity MLP), GIN-flow Poisson decoder.

    ``transform(X)`` returns the label-free encoder mean, the mean of q(z | x) (default, used for test
    data: no labels needed). ``posterior_mean(X, y)`` returns the mean of q(z | x, u), the original
    paper's variant, which needs the labels of the bins it embeds.

    Parameters
    ----------
    n_latent : int
        Latent dimensions (3 in the NER paper's comparison).
    window : int
        Bins the encoder reads around each bin (10, as the NER paper ran it; 1, the bin alone, is the
        original piVAE encoder).
    hidden : int
        Units per hidden layer of every MLP (encoder, prior, lift, couplings).
    n_blocks : int
        GIN blocks in the decoder (a fixed permutation and two affine couplings each).
    learning_rate, epochs, batch_size : Adam's step size, passes over the training bins, bins per step.
    device : str
        A torch device, or ``"cuda_if_available"``.
    seed : int or None
        Seeds the initialisation, the permutations, the batches and the reparameterisation noise;
        the same seed gives identical embeddings on CPU.

    Rates should be non-negative (counts or smoothed counts per bin), as the Poisson model assumes.
    """

    def __init__(self, n_latent: int = 3, window: int = 10, hidden: int = 60, n_blocks: int = 2,
                 learning_rate: float = 2.5e-4, epochs: int = 50, batch_size: int = 200,
                 device: str = "cuda_if_available", seed: int | None = 0):
        self.n_latent = n_latent
        self.window = window
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def fit(self, X, y):
        """Train on rates ``X`` (bins x units, non-negative) and labels ``y`` (bins x 3)."""
        X, y = check_paired(X, y, name="training")
        if (X < 0).any():
            raise ValueError("piVAE models rates as Poisson counts: neural activity must be non-negative")
        for name in ("n_latent", "window", "hidden", "n_blocks", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        self.device_ = _resolve_device(self.device)
        self.velocity_mean_ = y[:, :2].mean(axis=0)
        self.velocity_scale_ = y[:, :2].std(axis=0) + 1e-8
        self.n_features_in_ = X.shape[1]

        with torch.random.fork_rng(devices=[]):  # seed this fit without touching the caller's stream
            if self.seed is not None:
                torch.manual_seed(self.seed)
            network = _Network(X.shape[1] * self.window, X.shape[1], self.n_latent, self.hidden,
                               self.n_blocks).to(self.device_)
            optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
            inputs, target = self._inputs(X), torch.as_tensor(X, dtype=torch.float32, device=self.device_)
            classes, velocity = self._labels(y)
            self.loss_history_ = []
            network.train()
            for _ in range(self.epochs):
                total = 0.0
                # Batches drawn on the CPU: the same seed gives the same order on any device.
                for batch in torch.randperm(len(X)).to(self.device_).split(self.batch_size):
                    loss = _negative_elbo(network, inputs[batch], classes[batch], velocity[batch], target[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                self.loss_history_.append(total / len(X))
        self.network_ = network.eval()
        return self

    def transform(self, X) -> np.ndarray:
        """Label-free embedding of rates (bins x units): the mean of q(z | x), (bins x n_latent)."""
        check_is_fitted(self)
        X = check_samples(X, "neural activity", self.n_features_in_)
        with torch.no_grad():
            mean, _ = self.network_.encode(self._inputs(X))
        return mean.cpu().numpy()

    def posterior_mean(self, X, y) -> np.ndarray:
        """Label-informed embedding: mean of q(z | x, u). It sees the labels ``y`` of the bins it embeds."""
        check_is_fitted(self)
        X, y = check_paired(check_samples(X, "neural activity", self.n_features_in_), y, name="embedded",
                            require_all_directions=False)
        with torch.no_grad():
            mean, _ = gaussian_product(*self.network_.encode(self._inputs(X)), *self.network_.prior(*self._labels(y)))
        return mean.cpu().numpy()

    def _labels(self, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's inputs: direction classes 0..7 and the velocity standardised on the training set."""
        classes = torch.as_tensor(direction_classes(y[:, 2]), device=self.device_)
        velocity = (y[:, :2] - self.velocity_mean_) / self.velocity_scale_
        return classes, torch.as_tensor(velocity, dtype=torch.float32, device=self.device_)

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        """The encoder's input per bin: the ``window`` bins centred on it, flattened; edges are repeated."""
        left = self.window // 2
        padded = np.pad(X, ((left, self.window - 1 - left), (0, 0)), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.window, axis=0)  # bins x units x window
        flat = np.array(windows.reshape(len(X), -1), dtype=np.float32)  # a copy: torch wants writable memory
        return torch.as_tensor(flat, device=self.device_)


def _negative_elbo(network: _Network, inputs, classes, velocity, target) -> torch.Tensor:
    mean_x, logvar_x = network.encode(inputs)
    mean_u, logvar_u = network.prior(classes, velocity)
    mean, logvar = gaussian_product(mean_x, logvar_x, mean_u, logvar_u)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    # Poisson negative log-likelihood without the log(x!) constant; it is defined for smoothed (non-integer) counts.
    reconstruction = F.poisson_nll_loss(network.decoder(z), target, log_input=False, reduction="none").sum(dim=1)
    return (reconstruction + gaussian_kl(mean, logvar, mean_u, logvar_u)).mean()


def _resolve_device(device: str) -> torch.device:
    if device == "cuda_if_available":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
