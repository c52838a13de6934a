"""Download session files from the public NER repository and verify them against the registry."""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pooch

from ner.atomic import atomic_write

from .sessions import FILE_SUFFIX, resolve_data_dir

UPSTREAM_COMMIT = "c8bdb72f25e9a4b90bdd2544f5e18654a73ee93a"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/NeuroscienceAI/NER/{UPSTREAM_COMMIT}/"
BASE_URL_ENV = "NER_FETCH_URL"


class RegistryEntry(NamedTuple):
    """One upstream session file: its repository path and checksums (sha256 and size may be unknown)."""

    path: str
    git_blob_sha1: str
    sha256: str | None
    size: int | None

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        return self.filename[: -len(FILE_SUFFIX)]


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, RegistryEntry]:
    """Session name -> registry entry, read from the packaged registry.tsv."""
    text = resources.files(__package__).joinpath("registry.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    header, body = rows[0], rows[1:]
    if header != ["path", "git_blob_sha1", "sha256", "size"]:
        raise ValueError(f"registry.tsv has an unexpected header {header}; reinstall the package")
    entries = (RegistryEntry(path, blob, sha or None, int(size) if size else None) for path, blob, sha, size in body)
    return {entry.name: entry for entry in entries}


def session_names() -> list[str]:
    """Names of every session that can be fetched."""
    return sorted(registry())


def git_blob_sha1(path: str | os.PathLike) -> str:
    """Git's object id of a file: sha1 of b"blob <size>\\0" followed by the content."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _hash_into(digest, path)
    return digest.hexdigest()


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    _hash_into(digest, Path(path))
    return digest.hexdigest()


def _hash_into(digest, path: Path) -> None:
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)


def _checksum_mismatch(entry: RegistryEntry, path: Path) -> str | None:
    """None if ``path`` matches the registry, else a description of the mismatch."""
    if entry.sha256:
        kind, expected, actual = "sha256", entry.sha256, sha256(path)
    else:
        kind, expected, actual = "git blob sha1", entry.git_blob_sha1, git_blob_sha1(path)
    return None if actual == expected else f"{kind} expected {expected}, got {actual}"


def fetch(
    names: list[str] | str | None = None,
    dest: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download sessions (all when ``names`` is None) into ``dest`` and return their paths.

    ``dest`` defaults to the data directory ($NER_DATA_DIR, else ./data). Files already there that pass
    the checksum are kept as they are. ``base_url`` (else $NER_FETCH_URL, else GitHub at the pinned
    commit) is the root of a tree laid out like the upstream repository. Every file is checked (sha256
    where known, git blob id otherwise) before it is moved into place; a mismatch raises ValueError and
    leaves nothing behind.
    """
    known = registry()
    if names is None:
        names = sorted(known)
    elif isinstance(names, str):
        names = [names]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown session(s) {', '.join(unknown)}; sessions that can be fetched: {', '.join(sorted(known))}"
        )
    folder = resolve_data_dir(dest)
    root = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/") + "/"
    downloader = pooch.HTTPDownloader(progressbar=progress)
    paths = []
    for name in names:
        entry = known[name]
        target = folder / entry.filename
        if target.is_file() and _checksum_mismatch(entry, target) is not None:
            target.unlink()  # known bad: never leave it under the real name
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _download(downloader, root + entry.path, entry, target)
        paths.append(target)
    return paths


def _download(downloader, url: str, entry: RegistryEntry, target: Path) -> None:
    # Download next to the target and rename only once verified, so an interrupted or bad download
    # never leaves a file under the real name.
    with atomic_write(target) as partial:
        try:
            downloader(url, str(partial), None)
        except OSError as exc:  # requests' errors derive from OSError
            raise OSError(
                f"could not download {url}: {exc}; check the network, or point base_url / ${BASE_URL_ENV} at a mirror"
            ) from exc
        mismatch = _checksum_mismatch(entry, partial)
        if mismatch:
            raise ValueError(
                f"checksum mismatch for {entry.filename} downloaded from {url}: {mismatch}; the file was deleted. "
                "Retry, or check that the mirror serves the upstream commit " + UPSTREAM_COMMIT
            )
