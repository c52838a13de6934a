"""piVAE (Zhou & Wei 2020) in PyTorch: a VAE whose latent prior is conditioned on the behaviour labels.

Model, per time bin t with rates x_t (units) and labels u_t:

- encoder q(z | x): 1-D convolutions over the window of ``window`` bins around t -> Gaussian (mean, log-var);
- label prior p(z | u): an MLP of u = (vx, vy standardised on the training set, cos angle, sin angle)
  -> Gaussian (mean, log-var);
- posterior q(z | x, u) ∝ q(z | x) p(z | u), a product of Gaussians (precision-weighted);
- decoder: an MLP with softplus output giving Poisson firing rates of bin t. (The original used a GIN
  flow here; a plain MLP keeps the same observation model with less machinery.)

Training maximises the ELBO: Poisson log-likelihood of x_t at z ~ q(z | x, u) minus KL(q(z | x, u) || p(z | u)).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from ner.data.labels import check_paired, check_samples


def label_features(y: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Prior inputs from labels (bins x 3): standardised velocity, and the angle on the unit circle."""
    angle = np.deg2rad(y[:, 2])
    return np.column_stack([(y[:, :2] - mean) / scale, np.cos(angle), np.sin(angle)]).astype(np.float32)


class _Network(nn.Module):
    def __init__(self, n_units: int, n_latent: int, window: int, hidden: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(n_units, hidden, 3), nn.GELU(),
            nn.Conv1d(hidden, hidden, 3), nn.GELU(),
            nn.Conv1d(hidden, hidden, 3), nn.GELU(),
            nn.Flatten(),
            nn.Linear(hidden * (window - 6), 2 * n_latent),
        )
        self.prior = nn.Sequential(
            nn.Linear(4, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 2 * n_latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(n_latent, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, n_units), nn.Softplus(),
        )

    def encode(self, windows):
        return self.encoder(windows).chunk(2, dim=1)

    def label_prior(self, u):
        return self.prior(u).chunk(2, dim=1)


def _posterior(mean_x, logvar_x, mean_u, logvar_u):
    """Product of the encoder's and the prior's Gaussians: (mean, log-variance)."""
    precision_x, precision_u = torch.exp(-logvar_x), torch.exp(-logvar_u)
    variance = 1.0 / (precision_x + precision_u)
    return variance * (mean_x * precision_x + mean_u * precision_u), torch.log(variance)


class PiVAE(TransformerMixin, BaseEstimator):
    """piVAE baseline with a conv encoder over ``window`` bins, Poisson observations and a label prior.

    ``transform(X)`` returns the label-free encoder mean (default, used for test data: no labels needed).
    ``posterior_mean(X, y)`` returns the label-informed posterior mean, the original paper's variant,
    which needs the labels of the bins it embeds.

    Rates should be non-negative (counts or smoothed counts per bin), as the Poisson model assumes.
    """

    def __init__(self, n_latent: int = 3, window: int = 10, hidden: int = 32, learning_rate: float = 2.5e-4,
                 epochs: int = 50, batch_size: int = 200, device: str = "cuda_if_available", seed: int | None = 0):
        self.n_latent = n_latent
        self.window = window
        self.hidden = hidden
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
        if self.window < 7:
            raise ValueError(f"window must be at least 7 bins for the three convolutions, got {self.window}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")
        self.device_ = _resolve_device(self.device)
        self.label_mean_ = y[:, :2].mean(axis=0)
        self.label_scale_ = y[:, :2].std(axis=0) + 1e-8
        self.n_features_in_ = X.shape[1]

        with torch.random.fork_rng(devices=[]):  # seed this fit without touching the caller's stream
            if self.seed is not None:
                torch.manual_seed(self.seed)
            network = _Network(X.shape[1], self.n_latent, self.window, self.hidden).to(self.device_)
            optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
            windows = self._windows(X)
            target = torch.as_tensor(X, dtype=torch.float32, device=self.device_)
            u = torch.as_tensor(label_features(y, self.label_mean_, self.label_scale_), device=self.device_)
            self.loss_history_ = []
            network.train()
            for _ in range(self.epochs):
                total = 0.0
                for batch in torch.randperm(len(X), device=self.device_).split(self.batch_size):
                    loss = _negative_elbo(network, windows[batch], u[batch], target[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                self.loss_history_.append(total / len(X))
        self.network_ = network.eval()
        return self

    def transform(self, X) -> np.ndarray:
        """Label-free embedding of rates (bins x units): the encoder mean, (bins x n_latent)."""
        check_is_fitted(self)
        X = check_samples(X, "neural activity", self.n_features_in_)
        with torch.no_grad():
            mean, _ = self.network_.encode(self._windows(X))
        return mean.cpu().numpy()

    def posterior_mean(self, X, y) -> np.ndarray:
        """Label-informed embedding: mean of q(z | x, u). It sees the labels ``y`` of the bins it embeds."""
        check_is_fitted(self)
        X, y = check_paired(check_samples(X, "neural activity", self.n_features_in_), y, name="embedded")
        u = torch.as_tensor(label_features(y, self.label_mean_, self.label_scale_), device=self.device_)
        with torch.no_grad():
            mean, _ = _posterior(*self.network_.encode(self._windows(X)), *self.network_.label_prior(u))
        return mean.cpu().numpy()

    def _windows(self, X: np.ndarray) -> torch.Tensor:
        """(bins x units x window) windows centred on each bin; the recording's edges are repeated."""
        left = self.window // 2
        padded = np.pad(X, ((left, self.window - 1 - left), (0, 0)), mode="edge")
        tensor = torch.as_tensor(padded, dtype=torch.float32, device=self.device_)
        return tensor.unfold(0, self.window, 1)  # bins x units x window, as Conv1d reads it


def _negative_elbo(network: _Network, windows, u, target) -> torch.Tensor:
    mean_x, logvar_x = network.encode(windows)
    mean_u, logvar_u = network.label_prior(u)
    mean, logvar = _posterior(mean_x, logvar_x, mean_u, logvar_u)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    rate = network.decoder(z)
    # Poisson negative log-likelihood without the log(x!) constant; it is defined for smoothed (non-integer) counts.
    reconstruction = F.poisson_nll_loss(rate, target, log_input=False, reduction="none").sum(dim=1)
    kl = 0.5 * (logvar_u - logvar + (torch.exp(logvar) + (mean - mean_u) ** 2) / torch.exp(logvar_u) - 1.0).sum(dim=1)
    return (reconstruction + kl).mean()


def _resolve_device(device: str) -> torch.device:
    if device == "cuda_if_available":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
