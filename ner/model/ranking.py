"""The order of label distances along each row, for the rank loss (:mod:`ner.model.loss`).

Row i of the label-distance matrix is ranked once per step: its columns near to
far and far to near, and where neighbours in that order tie (ties share a
denominator in the loss). Depends on the labels alone, never on the features.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

__all__ = ["rank_rows", "tie_changes"]


def rank_rows(distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's order far to near and near to far, and the flat (row-major)
    positions in the far-to-near order whose value equals the next one's."""
    m = distance.shape[1]
    if distance.device.type == "cpu" and distance.dtype == torch.float32:
        near_to_far, ranked = _sort_packed(distance)
    elif distance.device.type == "cpu":
        near_to_far = torch.from_numpy(distance.numpy().argsort(axis=1))
        ranked = distance.gather(1, near_to_far)
    else:
        ranked, near_to_far = distance.sort(dim=1)
    # Near to far, position p + 1 ties with p: far to near, m - 2 - p with the next.
    row, near = torch.eq(ranked[:, 1:], ranked[:, :-1]).nonzero().unbind(1)
    ties = (row * m + (m - 2 - near)).sort().values
    return near_to_far.flip(1), near_to_far, ties


def _sort_packed(distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's columns near to far, ties by column, and the sorted values, for
    non-negative float32 distances on the CPU.

    Numpy sorts 32-bit integers ~7x faster than 64-bit ones (AVX-512 CPU, 512
    labels), and any integer keys far faster than it argsorts. So each distance is scaled onto the
    integers below 2^(31 - w), floored (which keeps their order and their ties)
    and shifted left by w bits that then hold its column: sorted, these keys
    order the distances, ties by column, except that two different distances
    floored to the same integer come out by column. The rows where that
    misordered them (3-6 % on paper-like labels at batch 512) are sorted again
    with exact 64-bit keys.
    """
    m = distance.shape[1]
    width = max(1, (m - 1).bit_length())  # bits of a column index
    if width > 12:  # too few bits left for the value: most rows would misorder
        return _sort_packed_wide(distance)
    largest = (1 << (31 - width)) - 1
    top = distance.max().item()
    scaled = distance * (largest / top if top > 0 else 0.0)
    keys = (scaled.to(torch.int32).clamp_(max=largest).bitwise_left_shift_(width)
            .bitwise_or_(torch.arange(m, dtype=torch.int32)))
    keys.numpy().sort(axis=1)
    near_to_far = keys.bitwise_and_((1 << width) - 1).long()
    ranked = distance.gather(1, near_to_far)
    misordered = (ranked[:, 1:] < ranked[:, :-1]).any(1).nonzero().squeeze(1)
    if len(misordered):
        near_to_far[misordered], ranked[misordered] = _sort_packed_wide(distance[misordered])
    return near_to_far, ranked


def _sort_packed_wide(distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``_sort_packed``, with 64-bit (bits, column) keys: exact for any width.
    Sorted as float64 (positive, so ordered as their bits too, subnormals
    included unless flushed to zero), which numpy does faster than as int64."""
    keys = torch.empty(distance.shape, dtype=torch.int64)
    pairs = keys.view(torch.int32).view(*distance.shape, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    pairs[..., low] = torch.arange(distance.shape[1], dtype=torch.int32)
    pairs[..., high] = distance.view(torch.int32)
    keys.numpy().view(np.float64).sort(axis=1)
    ranked = pairs[..., high].view(torch.float32).clone()
    return keys.bitwise_and_(0xFFFFFFFF), ranked


def tie_changes(ties: torch.Tensor, m: int, copies: int, dtype: torch.dtype,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ties change the weight of log prefix[a, p] in sum_{j != i} log den_ij
    from ``copies``: flat positions a * m + p and the changes, (k, 1).

    Every j of a tie group shares the denominator at the group's last position:
    that position weighs copies * (group size), the group's others 0. ``ties``
    holds the flat positions that tie with the next one (few, so numpy).
    """
    ties = ties.cpu().numpy()
    # A run of consecutive tying positions is one group, less its last.
    ends = np.diff(ties, append=ties[-1:] + 2) != 1
    sizes = np.diff(np.flatnonzero(ends), prepend=-1) + 1
    positions = np.concatenate([ties, ties[ends] + 1])
    changes = np.concatenate([np.full(len(ties), -copies), copies * (sizes - 1)])
    return (torch.from_numpy(positions).to(device),
            torch.from_numpy(changes).to(device=device, dtype=dtype)[:, None])
