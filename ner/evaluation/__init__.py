"""Evaluation of embeddings: decoding, cross-session alignment, statistics and parity checks."""

from ner.evaluation.alignment import (
    Alignment,
    LegacyAlignment,
    fit_alignment,
    legacy_alignment,
    procrustes,
    trial_averages,
)
from ner.evaluation.cross_session import Session, cross_session_matrices
from ner.evaluation.decoding import (
    TrialDecoder,
    decode_session,
    score_trials,
    trial_positions,
)
from ner.evaluation.statistics import (
    compare_methods,
    friedman,
    off_diagonal,
    paired_ttest,
    repeated_measures_anova,
)

__all__ = [
    "Alignment",
    "LegacyAlignment",
    "Session",
    "TrialDecoder",
    "compare_methods",
    "cross_session_matrices",
    "decode_session",
    "fit_alignment",
    "friedman",
    "legacy_alignment",
    "off_diagonal",
    "paired_ttest",
    "procrustes",
    "repeated_measures_anova",
    "score_trials",
    "trial_averages",
    "trial_positions",
]
