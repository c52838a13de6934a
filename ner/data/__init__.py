"""Session data: real recordings (load_session, fetch), their labels, a synthetic stand-in, MC_Maze."""

from .download import fetch
from .labels import PAPER_LAYOUT, LabelLayout
from .sessions import Session, SessionInfo, available_sessions, load_session
from .synthetic import synthetic_session, write_session_mat

__all__ = [
    "LabelLayout",
    "PAPER_LAYOUT",
    "Session",
    "SessionInfo",
    "available_sessions",
    "fetch",
    "load_session",
    "synthetic_session",
    "write_session_mat",
]
