"""Session data: real recordings (load_session, fetch) and a synthetic stand-in (synthetic_session).

Note: the attribute ``ner.data.fetch`` is the fetch function, which hides the submodule of the same name;
``from ner.data.fetch import registry`` still works, and ``importlib.import_module("ner.data.fetch")`` gives the module.
"""

from .fetch import fetch
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
