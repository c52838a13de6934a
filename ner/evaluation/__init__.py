"""Scoring embeddings: trial averages, decoding, cross-session alignment and matrices, statistics."""

from ner.evaluation.alignment import Alignment, fit_alignment, procrustes
from ner.evaluation.cross_session import SplitEmbedding, cross_session_matrices, pair_alignment, session_averages
from ner.evaluation.decoding import SCORES, TrialDecoder, decode_session, score_trials, trial_positions
from ner.evaluation.statistics import compare_methods, friedman, off_diagonal, paired_ttest, repeated_measures_anova
from ner.evaluation.trials import direction_angles, trial_averages

__all__ = [
    "Alignment",
    "SCORES",
    "SplitEmbedding",
    "TrialDecoder",
    "compare_methods",
    "cross_session_matrices",
    "decode_session",
    "direction_angles",
    "fit_alignment",
    "friedman",
    "off_diagonal",
    "paired_ttest",
    "pair_alignment",
    "procrustes",
    "repeated_measures_anova",
    "score_trials",
    "session_averages",
    "trial_averages",
    "trial_positions",
]
