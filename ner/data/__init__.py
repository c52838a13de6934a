"""Session data: real recordings (load_session, fetch) and a synthetic stand-in (synthetic_session)."""

from .download import fetch
from .sessions import Session, SessionInfo, available_sessions, load_session
from .synthetic import synthetic_session, write_session_mat

__all__ = [
    "Session",
    "SessionInfo",
    "available_sessions",
    "fetch",
    "load_session",
    "synthetic_session",
    "write_session_mat",
]
