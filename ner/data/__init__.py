"""Session data: real recordings (load_session, fetch) and a synthetic stand-in (synthetic_session).

Note: ``fetch`` here is the function; import the module as ``from ner.data import fetch as ...`` only for the
function, and use ``importlib.import_module("ner.data.fetch")`` where the module itself is needed.
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
