"""Positive sampling for NER: CEBRA's ``time_delta`` rule with an exact KD-tree search.

A positive for reference t is the sample whose labels lie nearest to
``labels[t] + (labels[s] - labels[s - time_delta])`` for a random s, exactly as
in :class:`cebra.distributions.TimedeltaDistribution`. CEBRA finds that nearest
sample with a dense distance matrix over the whole session on every step; a
KD-tree gives the same picks (up to exact distance ties) in a fraction of the time.
"""

from __future__ import annotations

import numpy as np
import torch
from cebra.distributions import TimedeltaDistribution
from scipy.spatial import cKDTree


class KDTreeIndex:
    """Exact nearest-neighbour search over the rows of ``samples``."""

    def __init__(self, samples: torch.Tensor):
        # float64 so that the search is exact where CEBRA's float32 one rounds.
        self._tree = cKDTree(samples.detach().cpu().numpy().astype(np.float64))

    def search(self, query: torch.Tensor) -> torch.Tensor:
        """Index of the sample nearest to each query row."""
        _, index = self._tree.query(query.detach().cpu().numpy(), k=1)
        return torch.from_numpy(index).to(query.device)

    def to(self, device):
        # The tree lives on the CPU; CEBRA moves a distribution's index with it.
        return self


class ExactTimedeltaDistribution(TimedeltaDistribution):
    """CEBRA's ``time_delta`` distribution searched with a KD-tree, and seedable."""

    def __init__(self, continuous: torch.Tensor, time_delta: int = 1,
                 device: str = "cpu", seed: int | None = None):
        super().__init__(continuous, time_delta, device=device)
        self.index = KDTreeIndex(self.data)
        seed_distributions(self, seed)


def seed_distributions(distribution: TimedeltaDistribution,
                       seed: int | None) -> None:
    """Seed a time_delta distribution and its prior (CEBRA 0.6 ignores seeds)."""
    if seed is not None:
        distribution.generator.manual_seed(seed)
        distribution.prior.generator.manual_seed(seed + 1)


def seeded(seed: int | None, build):
    """``build()`` with torch's global generator seeded by ``seed`` (None: as it is), the caller's
    random stream left untouched: a seeded model initialisation."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
