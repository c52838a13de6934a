"""Figures: the plotting vocabulary, what the notebooks share, Figs 8 and 11, the notebook runner."""
