"""Evaluation of embeddings: decoding, cross-session alignment, statistics and parity checks."""

from ner.evaluation.decoding import TrialDecoder, decode_session, score_trials, trial_positions

__all__ = ["TrialDecoder", "decode_session", "score_trials", "trial_positions"]
