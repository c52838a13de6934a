"""The Rank-N-Contrast loss of NER, exact and vectorised.

For features f (n rows) and labels y, with label distance D and similarity
S_ij = -||f_i - f_j|| / T, the loss is

    -1/(n(n-1)) sum_i sum_{j != i} [ S_ij - log den_ij ],
    den_ij = sum_{k != i, D_ik >= D_ij} exp(S_ik).

The inner sum runs over every sample at least as far from i (in label space) as
j, ties included. Each row of D is sorted once, far to near (O(m^2 log m) for m
labels; :mod:`ner.model.ranking`).
Rows of ``features`` that share a label (``copies``) share its sort, and their
exp(S) are first summed per label. Prefix sums of these in sorted order give
every denominator at once: a tie group's at its last position. So
sum_{j != i} log den_ij weighs each log(prefix) by a weight that depends on the
labels alone: copies * the group's size at a group's last position, 0 at its
others, one less at the very last (j = i). Without ties that is copies
everywhere, so only the (few) tied positions are stored, as changes.

The gradient is written out. d loss / d S_ik involves
sum_{j != i, D_ij <= D_ik} 1 / den_ij: a suffix sum of weight / prefix,
constant within each tie group (only its last position weighs), scattered
back to label order by the same sort. Pulling back through the distances takes
two skinny matrix products. Time O(n^2 + m^2 log m), memory O(n^2).

The copies of a label's prefix sums travel together: two as one complex
number, so that each gather, scatter, flip and prefix sum moves both at once.

The n x n work (distances, exp(S), the sums per label) runs in blocks of rows
that stay in cache. Where samples may lie more than 80 temperatures apart, the
loss is computed in float64 with each row shifted by its largest similarity, so
that exp does not underflow; otherwise no shift is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from cebra.models.criterions import ContrastiveLoss

from ner.model.ranking import rank_rows, tie_changes


@dataclass(frozen=True)
class LabelDistance:
    """L1 distance between label vectors, with optional circular columns.

    ``circular`` maps a column index to its period; the distance along such a
    column is the shorter way round (e.g. reach angle in degrees, period 360).

    Examples
    --------
    With the paper's labels ``[vx, vy, angle]``, 350 and 10 degrees are 20 apart:

    >>> import torch
    >>> a = torch.tensor([[0.0, 0.0, 350.0]])
    >>> b = torch.tensor([[1.0, -2.0, 10.0], [0.0, 0.0, 350.0]])
    >>> LabelDistance()(a, b)
    tensor([[23.,  0.]])
    >>> LabelDistance(circular=())(a, b)     # every column linear: the long way round
    tensor([[343.,   0.]])
    """

    circular: tuple[tuple[int, float], ...] = ((2, 360.0),)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # By columns, each contiguous: broadcasting a strided column is slower.
        # One buffer for every column's differences: fewer large allocations.
        same = b is a
        a = self._wrapped(a).T.contiguous()
        b = a if same else self._wrapped(b).T.contiguous()
        distance, diff = torch.zeros(2, a.shape[1], b.shape[1], dtype=a.dtype, device=a.device)
        for column, (x, y) in enumerate(zip(a, b)):
            torch.sub(x[:, None], y, out=diff).abs_()
            if column in self.periods:
                # Both sides lie in [0, period), so one wrap is the short way.
                torch.minimum(diff, self.periods[column] - diff, out=diff)
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

    Examples
    --------
    Features laid out in the order of their labels score a lower loss than the
    same features in a scrambled order:

    >>> import torch
    >>> labels = torch.arange(6.0)[:, None]          # one linear label column
    >>> line = LabelDistance(circular=())
    >>> ordered = rank_loss(labels.clone(), labels, label_distance=line)
    >>> scrambled = rank_loss(labels[[3, 0, 5, 1, 4, 2]], labels, label_distance=line)
    >>> bool(ordered < scrambled)
    True
    >>> rank_loss(torch.cat([labels, labels]), labels, label_distance=line,
    ...           copies=2).shape                    # a scalar
    torch.Size([])
    """
    n, m = len(features), len(labels)
    if n != copies * m:
        raise ValueError(f"{n} feature rows cannot carry {copies} copies of "
                         f"{m} labels.")
    far = _may_underflow(features, temperature)
    dtype = torch.float64 if far else features.dtype
    with torch.no_grad():
        far_to_near, near_to_far, ties = rank_rows(label_distance(labels, labels))
        tie_positions, weight_changes = tie_changes(ties, m, copies, dtype, features.device)
    loss = _RankLoss.apply(features.to(dtype), far_to_near, near_to_far, tie_positions,
                           weight_changes, copies, float(temperature), far)
    return loss.to(features.dtype)


def _may_underflow(features: torch.Tensor, temperature: float) -> bool:
    """Whether two samples may lie more than 80 temperatures apart (a cheap bound:
    the diameter is at most twice the largest distance to the mean)."""
    with torch.no_grad():
        radius = (features - features.mean(0)).norm(dim=1).max()
    return 2 * radius.item() > 80 * temperature


class _RankLoss(torch.autograd.Function):
    """The loss with its gradient written out: a few passes over the n x n
    similarities instead of autograd's record of every step.

    Per-label data (exp(S) summed per label, prefix sums) is laid out
    (m, m, copies): [label row a, sorted position or label b, copy c], for
    feature row c * m + a.
    """

    @staticmethod
    def forward(ctx, features, far_to_near, near_to_far, tie_positions, tie_changes,
                copies, temperature, shift):
        n = len(features)
        m = n // copies
        distance, distance_sum, weights, per_label, nearest, scratch = _similarities(
            features, temperature, copies, shift)
        paired = _paired(per_label)
        prefix = _unpaired(paired.gather(1, _along(far_to_near, paired)).cumsum_(1), copies)
        # Guards log(0), which then has weight 0. Unshifted, every weight off the
        # diagonal is at least exp(-80): only a row's first prefix can be 0 (its
        # own label with copies=1, when every label ties with it).
        (prefix if shift else prefix[:, :1]).clamp_min_(_tiny(prefix))
        # sum_{j != i} log den_ij: copies * log prefix, less that of the whole row
        # (j = i), and changed where labels tie.
        # (Into per_label's buffer, free by now, where it is not the weights.)
        log_prefix = torch.log(prefix, out=per_label) if copies > 1 else prefix.log()
        log_sum = copies * log_prefix.sum() - log_prefix[:, -1].sum()
        if len(tie_positions):
            log_sum += (log_prefix.view(m * m, copies)[tie_positions] * tie_changes).sum()
        total = -distance_sum / temperature - log_sum
        if shift:
            total = total + (n - 1) * nearest.sum() / temperature
        ctx.save_for_backward(features, distance, weights, prefix, near_to_far, tie_positions,
                              tie_changes)
        ctx.scratch = scratch  # for the backward's n x n gradient
        ctx.copies, ctx.temperature, ctx.shift = copies, temperature, shift
        return -total / (n * (n - 1))

    @staticmethod
    def backward(ctx, grad_output):
        (features, distance, weights, prefix, near_to_far, tie_positions,
         tie_changes) = ctx.saved_tensors
        copies, temperature = ctx.copies, ctx.temperature
        n = len(features)
        m = n // copies
        # d loss / d distance_ik = scale * (1 - exp(S_ik) reach_ik), where reach_ik
        # = sum_{j != i, D_ij <= D_ik} 1 / den_ij: a suffix sum (near side), from
        # k's position on, of weight / prefix, weighted as log prefix in forward.
        scale = grad_output / (temperature * n * (n - 1))
        inverse = torch.div(-copies * scale, prefix)
        inverse[:, -1] += scale / prefix[:, -1]  # j = i
        if len(tie_positions):
            inverse.view(m * m, copies)[tie_positions] -= (
                scale * tie_changes / prefix.view(m * m, copies)[tie_positions])
        if ctx.shift:
            # A denominator clamped at `tiny` has no gradient, as its clamp.
            inverse.masked_fill_(prefix <= _tiny(prefix), 0.0)
        near_sum = _paired(inverse).flip(1).cumsum_(1)  # positions near to far
        reach = _paired(inverse).scatter_(1, _along(near_to_far, near_sum), near_sum)
        reach = _unpaired(reach, copies).permute(2, 0, 1).reshape(n, 1, m)  # label order
        # Per unit distance: d distance_ik / d f_i = (f_i - f_k) / distance_ik,
        # and the infinite self-distance makes the diagonal 0.
        grad = torch.addcmul(scale, weights.view(n, copies, m), reach,
                             out=ctx.scratch.view(n, copies, m)).view(n, n)
        grad_features = _pull_back(grad.div_(distance), features)
        if not math.isfinite(grad_features.sum()):
            # Coinciding samples (distance 0) get no gradient: f_i - f_k = 0.
            grad_features = _pull_back(grad.nan_to_num_(0.0, 0.0, 0.0), features)
        return grad_features, None, None, None, None, None, None, None


def _similarities(features: torch.Tensor, temperature: float, copies: int, shift: bool):
    """Distances (infinite on the diagonal) and their sum, weights exp(S) (each
    row shifted by its largest similarity, ``nearest`` / T, if ``shift``) and
    their sums over the copies of each label, (m, m, copies).

    Distances come from coordinate differences (not |a|^2 + |b|^2 - 2ab), so that
    coinciding samples are exactly 0 apart. Blocks of rows that stay in cache
    make this 2-3x faster than torch.cdist's direct mode alone on the CPU.

    Also returns a scratch n x n buffer for the backward's gradient, allocated
    with the distances and weights: fewer large allocations a step let the C
    allocator keep their pages rather than hand them back and fault them in
    again (up to ~5 ms a step at n = 1024).
    """
    n = len(features)
    m = n // copies
    block = 256 if features.device.type == "cpu" else m
    coordinates = features.T.contiguous()
    distance, weights, scratch = torch.empty(3, n, n, dtype=features.dtype,
                                             device=features.device)
    per_label = weights.new_empty(m, m, copies) if copies > 1 else weights.view(m, m, 1)
    nearest = weights.new_empty(n, 1) if shift else None
    distance_sum = weights.new_zeros(())
    differences = weights.new_empty(min(block, m), n)
    for copy in range(copies):
        for first in range(0, m, block):
            anchors = slice(first, min(first + block, m))  # their label rows
            rows = slice(copy * m + anchors.start, copy * m + anchors.stop)
            d, w, diff = distance[rows], weights[rows], differences[:anchors.stop - first]
            torch.sub(coordinates[0, rows, None], coordinates[0], out=d).square_()
            for x in coordinates[1:]:
                d.addcmul_(torch.sub(x[rows, None], x, out=diff), diff)
            distance_sum += d.sqrt_().sum()
            d.diagonal(rows.start).fill_(torch.inf)  # exp(-inf) = 0 leaves k = i out
            torch.mul(d, -1 / temperature, out=w)
            if shift:
                torch.amin(d, dim=1, keepdim=True, out=nearest[rows])
                w += nearest[rows] / temperature
            w.exp_()
            if copies > 1:
                torch.add(w[:, :m], w[:, m:2 * m], out=per_label[anchors, :, copy])
                for other in range(2, copies):
                    per_label[anchors, :, copy] += w[:, other * m:(other + 1) * m]
    return distance, distance_sum, weights, per_label, nearest, scratch


def _paired(x: torch.Tensor) -> torch.Tensor:
    """(m, m, copies) as one element per (row, position), so that a gather,
    scatter, flip or prefix sum along the rows moves all copies at once: two as
    complex numbers (about twice as fast as two real rows)."""
    if x.shape[2] == 1:
        return x.view(x.shape[:2])
    if x.shape[2] == 2 and x.dtype in (torch.float32, torch.float64):
        return torch.view_as_complex(x)
    return x


def _unpaired(x: torch.Tensor, copies: int) -> torch.Tensor:
    if x.is_complex():
        return torch.view_as_real(x)
    return x.view(*x.shape[:2], copies)


def _along(index: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """``index`` (m, m) for a gather or scatter along the rows of ``paired``."""
    return index if paired.dim() == 2 else index[..., None].expand(paired.shape)


def _pull_back(grad: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """sum_k grad_ik (f_i - f_k) + grad_ki (f_i - f_k): f_i moves both d_ik and
    d_ki. Two skinny products, with a column of ones for the row/column sums."""
    # Held as (d + 1, n): on the CPU, grad times its (column-major) transpose is
    # ~5x faster than times a row-major (n, d + 1), and extended @ grad ~7x
    # faster than grad.T @ extended.
    extended = torch.cat([features, torch.ones_like(features[:, :1])], 1).T.contiguous()
    rows = grad @ extended.T
    columns = (extended @ grad).T
    return ((rows[:, -1] + columns[:, -1])[:, None] * features
            - rows[:, :-1] - columns[:, :-1])


def _tiny(tensor: torch.Tensor) -> float:
    return torch.finfo(tensor.dtype).tiny
