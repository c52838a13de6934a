"""The Rank-N-Contrast loss of NER, exact and vectorised.

For features f (n rows) and labels y, with label distance D and similarity
S_ij = -||f_i - f_j|| / T, the loss is

    -1/(n(n-1)) sum_i sum_{j != i} [ S_ij - log sum_{k != i, D_ik >= D_ij} exp(S_ik) ]

The inner sum runs over every sample at least as far from i (in label space) as j,
ties included. Sorting each row of D once and taking suffix log-sum-exps of S in
that order gives every inner sum at once: O(n^2 log n) time, O(n^2) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from cebra.models.criterions import ContrastiveLoss


@dataclass(frozen=True)
class LabelDistance:
    """L1 distance between label vectors, with optional circular columns.

    ``circular`` maps a column index to its period; the distance along such a
    column is the shorter way round (e.g. reach angle in degrees, period 360).
    """

    circular: tuple[tuple[int, float], ...] = ((2, 360.0),)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self._wrapped(a), self._wrapped(b)
        distance = torch.zeros(len(a), len(b), dtype=a.dtype, device=a.device)
        for column in range(a.shape[1]):
            diff = (a[:, None, column] - b[None, :, column]).abs()
            if column in self.periods:
                # Both sides lie in [0, period), so one wrap is the short way.
                diff = torch.minimum(diff, self.periods[column] - diff)
            distance += diff
        return distance

    @property
    def periods(self) -> dict[int, float]:
        return dict(self.circular)

    def _wrapped(self, labels: torch.Tensor) -> torch.Tensor:
        if not self.circular:
            return labels
        labels = labels.clone()
        for column, period in self.circular:
            labels[:, column] = labels[:, column].remainder(period)
        return labels


class RankLoss(ContrastiveLoss):
    """NER's rank loss on reference/positive embeddings and their labels.

    Args:
        temperature: divides the Euclidean distance between embeddings.
        label_distance: distance between label rows; the default matches the
            paper's (vx, vy, angle in degrees) labels.
    """

    def __init__(self, temperature: float = 1.0,
                 label_distance: LabelDistance = LabelDistance()):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = float(temperature)
        self.label_distance = label_distance

    def forward(self, ref: torch.Tensor, pos: torch.Tensor,
                labels: torch.Tensor,
                pos_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of ``[ref; pos]`` ranked by label distance.

        Args:
            ref, pos: embeddings of shape (B, d).
            labels: labels of the reference samples, shape (B, L).
            pos_labels: labels of the positives; default: the reference's, as in
                the paper.
        """
        if ref.shape != pos.shape or ref.dim() != 2:
            raise ValueError(f"ref and pos must both be (B, d), got "
                             f"{tuple(ref.shape)} and {tuple(pos.shape)}.")
        if labels.dim() != 2 or len(labels) != len(ref):
            raise ValueError(f"labels must be (B, L) with B={len(ref)}, "
                             f"got {tuple(labels.shape)}.")
        features = torch.cat([ref, pos])
        if pos_labels is None:
            return rank_loss(features, labels, self.temperature,
                             self.label_distance, copies=2)
        return rank_loss(features, torch.cat([labels, pos_labels]),
                         self.temperature, self.label_distance)


def rank_loss(features: torch.Tensor, labels: torch.Tensor,
              temperature: float = 1.0,
              label_distance: LabelDistance = LabelDistance(),
              copies: int = 1) -> torch.Tensor:
    """The rank loss over all rows of ``features`` (copies * m, d).

    Row r of ``features`` carries label ``labels[r % m]``. Rows sharing a label
    share its sort, so the paper's setting (positives take their reference's
    label, ``copies=2``) sorts an m x m matrix instead of a 2m x 2m one.
    """
    n, m = len(features), len(labels)
    if n != copies * m:
        raise ValueError(f"{n} feature rows cannot carry {copies} copies of "
                         f"{m} labels.")
    with torch.no_grad():
        distance = label_distance(labels, labels)
        order = _argsort_rows(-distance)
        sorted_distance = distance.gather(1, order)
        # Sorted far to near, the samples with D_ik >= D_ij end where j's tie
        # group ends: a prefix sum up to there is the whole inner sum.
        positions = torch.arange(m, device=labels.device).expand(m, m)
        is_last = torch.ones_like(sorted_distance, dtype=torch.bool)
        is_last[:, :-1] = sorted_distance[:, :-1] != sorted_distance[:, 1:]
        group_end = positions.masked_fill(~is_last, m).flip(1).cummin(1).values.flip(1)
        # Row c * m + a of the features uses the sort of label row a.
        order, group_end = (index.expand(copies, m, m) for index in (order, group_end))

    # The direct (non-matmul) distance keeps exact zeros and a zero gradient there.
    distance = torch.cdist(features, features,
                           compute_mode="donot_use_mm_for_euclid_dist")
    with torch.no_grad():
        # Shift each row by its largest similarity to another sample (the
        # second-smallest distance; the smallest is the sample itself).
        nearest = distance.topk(2, dim=1, largest=False).values[:, 1:]
    # S_ik - max_k S_ik, written in place of a fresh tensor: no other op saves it.
    shifted = (nearest - distance) / temperature
    shifted.diagonal().fill_(-torch.inf)  # k != i
    # Sum exp(S_ik) over the rows k that share each label.
    per_label = shifted.exp().view(n, copies, m).sum(1).view(copies, m, m)
    prefix = per_label.gather(2, order).cumsum(2)
    tiny = torch.finfo(prefix.dtype).tiny  # guards log(0) should exp underflow
    log_denominator = prefix.gather(2, group_end).clamp_min(tiny).log()
    # Every j != i: all rows j (each label `copies` times) minus j = i, whose
    # label distance 0 puts it in the nearest group, i.e. the whole row.
    log_sum = copies * log_denominator.sum() - prefix[..., -1].clamp_min(tiny).log().sum()
    shift = -nearest / temperature
    total = -distance.sum() / temperature - (n - 1) * shift.sum() - log_sum
    return -total / (n * (n - 1))


def _argsort_rows(values: torch.Tensor) -> torch.Tensor:
    """Ascending argsort of each row.

    On the CPU numpy's vectorised sort is about 6x faster than torch's
    (benchmarks/bench_loss.py); the order of exact ties does not matter here.
    """
    if values.device.type == "cpu":
        return torch.from_numpy(values.numpy().argsort(axis=1))
    return values.argsort(dim=1)
