"""The Rank-N-Contrast loss of NER, exact and vectorised.

For features f (n rows) and labels y, with label distance D and similarity
S_ij = -||f_i - f_j|| / T, the loss is

    -1/(n(n-1)) sum_i sum_{j != i} [ S_ij - log sum_{k != i, D_ik >= D_ij} exp(S_ik) ]

The inner sum runs over every sample at least as far from i (in label space) as j,
ties included. Sorting each row of D once, far to near, and taking prefix sums of
exp(S) in that order gives every inner sum at once: O(n^2 log n) time, O(n^2)
memory. The gradient is written out too (one pass of suffix sums of 1/denominator).
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
        # Sorted far to near, the samples k with D_ik >= D_ij run up to the end
        # of j's tie group; those with D_ik <= D_ij start at its beginning.
        ranked = distance.gather(1, order)
        positions = torch.arange(m, device=labels.device).expand(m, m)
        is_first = torch.ones_like(ranked, dtype=torch.bool)
        is_first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
        is_last = is_first.roll(-1, dims=1)
        group_start = (positions * is_first).cummax(1).values
        group_end = positions.masked_fill(~is_last, m).flip(1).cummin(1).values.flip(1)
    if features.dtype != torch.float64 and _may_underflow(features, temperature):
        # exp(S) under float32 is exact only within ~87 temperatures of the row's
        # largest similarity; beyond that, compute in float64.
        loss = _RankLoss.apply(features.double(), order, group_start, group_end,
                               copies, float(temperature))
        return loss.to(features.dtype)
    return _RankLoss.apply(features, order, group_start, group_end, copies,
                           float(temperature))


def _may_underflow(features: torch.Tensor, temperature: float) -> bool:
    """Whether two samples may lie more than 80 temperatures apart (a cheap bound:
    the diameter is at most twice the largest distance to the mean)."""
    with torch.no_grad():
        radius = (features - features.mean(0)).norm(dim=1).max()
    return 2 * radius.item() > 80 * temperature


class _RankLoss(torch.autograd.Function):
    """The loss with its gradient written out: a few passes over the n x n
    similarities instead of autograd's record of every step."""

    @staticmethod
    def forward(ctx, features, order, group_start, group_end, copies, temperature):
        n = len(features)
        m = n // copies
        # Row c * m + a of the features uses the sort of label row a.
        order, group_start, group_end = (
            index.expand(copies, m, m) for index in (order, group_start, group_end))
        # The direct (non-matmul) distance keeps exact zeros.
        distance = torch.cdist(features, features,
                               compute_mode="donot_use_mm_for_euclid_dist")
        # Shift row i by its largest similarity to another sample before exp;
        # an infinite self-distance makes exp(S_ii) = 0, i.e. k != i.
        distance.diagonal().fill_(torch.inf)
        nearest = distance.amin(dim=1, keepdim=True)
        weights = (nearest - distance).div_(temperature).exp_()  # exp(S_ik - shift_i)
        # Sum over the rows k that share each label, then prefix sums far to near.
        per_label = weights.view(n, copies, m).sum(1).view(copies, m, m)
        prefix = per_label.gather(2, order).cumsum_(2)
        tiny = _tiny(prefix)  # guards log(0) should exp underflow
        denominator = prefix.gather(2, group_end).clamp_min_(tiny)
        # j = i has label distance 0: its denominator is the whole row.
        whole = prefix[..., -1].clamp_min(tiny)
        # Every j != i: all rows j (each label `copies` times) minus j = i.
        log_sum = copies * denominator.log().sum() - whole.log().sum()
        shift_sum = -nearest.sum() / temperature
        distance.diagonal().zero_()
        total = -distance.sum() / temperature - (n - 1) * shift_sum - log_sum
        ctx.save_for_backward(features, distance, weights, denominator, whole,
                              order, group_start)
        ctx.copies, ctx.temperature = copies, temperature
        return -total / (n * (n - 1))

    @staticmethod
    def backward(ctx, grad_output):
        features, distance, weights, denominator, whole, order, group_start = ctx.saved_tensors
        copies, temperature = ctx.copies, ctx.temperature
        n = len(features)
        m = n // copies
        # d loss_i / d S_ik = 1 - exp(S_ik) * sum_{j != i, D_ij <= D_ik} 1 / den_ij:
        # a suffix sum (near side) of 1/den from the start of k's tie group.
        # A denominator clamped at `tiny` has no gradient, as its clamp.
        inverse = (copies / denominator).masked_fill_(denominator <= _tiny(denominator), 0.0)
        near_sum = inverse.flip(2).cumsum(2).flip(2)
        reach = near_sum.gather(2, group_start) - (1 / whole)[..., None]
        reach = torch.empty_like(reach).scatter_(2, order, reach)  # label order
        # Written as (exp(S) reach - 1): the negated gradient, sign folded in below.
        grad = (weights.view(n, copies, m) * reach.view(n, 1, m)).view(n, n).sub_(1)
        # S = -distance / T and the loss is -total / (n (n - 1)); per unit distance,
        # since d d_ik / d f_i = (f_i - f_k) / d_ik.
        grad.mul_(-grad_output / (temperature * n * (n - 1))).div_(distance)
        grad.nan_to_num_(0.0, 0.0, 0.0)  # d = 0: self or coinciding samples
        # f_i moves both d_ik (row i) and d_ki (column i). (f.T @ grad is much
        # faster than grad.T @ f for this skinny product.)
        grad_features = ((grad.sum(1) + grad.sum(0))[:, None] * features
                         - grad @ features - (features.T @ grad).T)
        return grad_features, None, None, None, None, None


def _tiny(tensor: torch.Tensor) -> float:
    return torch.finfo(tensor.dtype).tiny


def _argsort_rows(values: torch.Tensor) -> torch.Tensor:
    """Ascending argsort of each row.

    On the CPU numpy's vectorised sort is about 6x faster than torch's
    (benchmarks/bench_loss.py); the order of exact ties does not matter here.
    """
    if values.device.type == "cpu":
        return torch.from_numpy(values.numpy().argsort(axis=1))
    return values.argsort(dim=1)
