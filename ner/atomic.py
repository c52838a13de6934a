"""Atomic writes: readers see the whole new file or the old one, never half of one."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; if the block succeeds, the file
    written there is flushed to disk and renamed to ``path``, else removed.

    The temporary name, ``.<name>.<pid>.<8 hex>.part``, tells which process
    wrote it, so that leftovers of killed runs can be recognised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        yield part
        descriptor = os.open(part, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
