"""What :class:`ner.NER` accepts: neural activity and labels checked before CEBRA sees them.

CEBRA accepts some inputs silently (integer labels become discrete ones) and fails on others deep
inside torch; these checks name the problem instead.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_array

from ner.data.labels import LabelLayout

__all__ = ["check_inputs", "check_sessions", "check_session_id"]


def check_inputs(X, y: tuple, layout: LabelLayout, batch_size: int | None):
    """One session's ``X`` (float32 samples x units) and its one label array (float32, 2-D), or a
    ValueError. Tensors and DataFrames must already be arrays."""
    if len(y) != 1:
        raise ValueError(f"NER.fit takes one label array y, got {len(y)}.")
    X = check_array(X, dtype=np.float32, input_name="X")
    label = np.asarray(y[0])
    if label.ndim == 1:
        label = label[:, None]  # one continuous variable
    label = check_array(label, dtype=None, input_name="y")
    if not np.issubdtype(label.dtype, np.floating):
        raise ValueError(
            f"y has dtype {label.dtype}; NER ranks continuous labels, and CEBRA "
            "would take integer labels as discrete. Pass y.astype(float).")
    if len(X) != len(label):
        raise ValueError(f"X has {len(X)} samples but y has {len(label)}.")
    layout.check(label.shape[1])
    if batch_size is None or len(X) < batch_size:
        raise ValueError(f"X has {len(X)} samples, fewer than batch_size="
                         f"{batch_size}; lower batch_size.")
    return X, label.astype(np.float32)


def check_sessions(X: list, y: tuple, layout: LabelLayout, batch_size: int | None):
    """:func:`check_inputs` for each session of a multi-session fit, and what they must share."""
    if len(y) != 1:
        raise ValueError(f"NER.fit takes one list of label arrays y, got {len(y)}.")
    labels = y[0]
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"X is a list of {len(X)} session(s), so y must be a list of as many "
                         f"label arrays, one per session; got {type(labels).__name__}.")
    if len(X) != len(labels):
        raise ValueError(f"X holds {len(X)} session(s) but y holds {len(labels)}; pass one "
                         "label array per session.")
    if len(X) < 2:
        # CEBRA's multi-session dataset takes two or more.
        raise ValueError(f"X holds {len(X)} session(s); a multi-session fit takes a list of two "
                         "or more (samples x units) arrays, a single session fit(X, y).")
    widths = [(np.shape(label)[1:2] or (1,))[0] for label in labels]
    if len(set(widths)) > 1:
        raise ValueError(f"the sessions' labels differ in width: y has {widths} column(s) per "
                         "session; every session needs the same label columns.")
    checked = []
    for number, (session, label) in enumerate(zip(X, labels)):
        if len(session) == 0 or len(label) == 0:
            raise ValueError(f"session {number} is empty (0 samples).")
        try:
            checked.append(check_inputs(session, (label,), layout, batch_size))
        except ValueError as error:
            raise ValueError(f"session {number}: {error}") from error
    return [session for session, _ in checked], [label for _, label in checked]


def check_session_id(session_id, num_sessions: int | None):
    """``session_id`` as an int naming one of ``num_sessions`` (None for a single-session model),
    or a ValueError: CEBRA raises a RuntimeError."""
    if num_sessions is None:
        if session_id not in (None, 0):
            raise ValueError(f"session_id={session_id!r}, but this NER model was fitted on a "
                             "single session; leave session_id out.")
        return session_id
    if session_id is None:
        raise ValueError(f"this NER model holds {num_sessions} sessions, one encoder each: pass "
                         f"session_id, an integer from 0 to {num_sessions - 1}.")
    if (isinstance(session_id, bool) or not isinstance(session_id, numbers.Integral)
            or not 0 <= session_id < num_sessions):
        raise ValueError(f"session_id={session_id!r} is out of range: this NER model holds "
                         f"{num_sessions} sessions, 0 to {num_sessions - 1}.")
    return int(session_id)
