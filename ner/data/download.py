"""Download files of the public NER repository and verify them against the packaged registries.

Two registries: ``registry.tsv`` (the session files, :func:`fetch`) and ``paper_results.tsv`` (the
paper's stored results, the original authors' ``data_NER/Fig4``, ``Fig5``, ``Fig6`` and ``Fig8``,
:func:`fetch_paper_results`). Both are downloaded the same way: raw files of the pinned commit, each checked
before it is moved into place. :func:`paper_results_dir` is where every figure finds the paper's numbers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pooch

from ner.atomic import atomic_write

from .sessions import DATA_DIR_ENV, FILE_SUFFIX, resolve_data_dir

UPSTREAM_COMMIT = "c8bdb72f25e9a4b90bdd2544f5e18654a73ee93a"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/NeuroscienceAI/NER/{UPSTREAM_COMMIT}/"
BASE_URL_ENV = "NER_FETCH_URL"
PAPER_RESULTS_PREFIX = "data_NER/"  # where the paper's stored results lie in the upstream repository
PAPER_RESULTS_FOLDER = "upstream_data_NER"  # their folder under the data directory (and under $NER_REFERENCE_DIR)
REFERENCE_ENV = "NER_REFERENCE_DIR"  # a folder holding a copy of the original's data_NER as upstream_data_NER/
FETCH_PAPER_RESULTS = "ner fetch --paper-results"
# The checkout ner is installed from (pip install -e .): its data/ is the default data directory of the notebooks.
_CHECKOUT = Path(__file__).resolve().parents[2]
_HEADER = ["path", "git_blob_sha1", "sha256", "size"]


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


def _read_registry(filename: str) -> list[RegistryEntry]:
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    header, body = rows[0], rows[1:]
    if header != _HEADER:
        raise ValueError(f"{filename} has an unexpected header {header}; reinstall the package")
    return [RegistryEntry(path, blob, sha or None, int(size) if size else None) for path, blob, sha, size in body]


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, RegistryEntry]:
    """Session name -> registry entry, read from the packaged registry.tsv."""
    return {entry.name: entry for entry in _read_registry("registry.tsv")}


@functools.lru_cache(maxsize=1)
def paper_results_registry() -> dict[str, RegistryEntry]:
    """The paper's stored result files: path under the upstream ``data_NER`` (``Fig4/NPZ_M1/...``,
    ``Fig8/...``) -> registry entry."""
    entries = {}
    for entry in _read_registry("paper_results.tsv"):
        if not entry.path.startswith(PAPER_RESULTS_PREFIX) or entry.sha256 is None or entry.size is None:
            raise ValueError(f"paper_results.tsv: bad entry {entry.path}; reinstall the package")
        entries[entry.path[len(PAPER_RESULTS_PREFIX):]] = entry
    return entries


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
    root = _root(base_url)
    downloader = pooch.HTTPDownloader(progressbar=progress)
    paths = []
    for name in names:
        entry = known[name]
        target = folder / entry.filename
        if target.is_file() and _checksum_mismatch(entry, target) is not None:
            target.unlink()  # known bad: never leave it under the real name
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _download(downloader, _url(root, entry), entry, target)
        paths.append(target)
    return paths


def _root(base_url: str | None) -> str:
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/") + "/"


def _url(root: str, entry: RegistryEntry) -> str:
    # Upstream names hold spaces, ':', '[' and ',': percent-encoded, as a URL path must be.
    return root + urllib.parse.quote(entry.path, safe="/")


def fetched_results_dir() -> Path:
    """Where :func:`fetch_paper_results` puts the paper's stored results by default:
    ``$NER_DATA_DIR/upstream_data_NER``, else ``data/upstream_data_NER`` of the checkout.

    Absolute (not ``./data``), so that ``ner fetch`` in the repository and the notebooks, which run in
    ``notebooks/``, name the same folder.
    """
    value = os.environ.get(DATA_DIR_ENV)
    return (Path(value) if value else _CHECKOUT / "data") / PAPER_RESULTS_FOLDER


def paper_results_dir() -> Path | None:
    """The folder holding the paper's stored results (laid out as the upstream ``data_NER``: ``Fig4/``,
    ``Fig5/``, ``Fig6/``, ``Fig8/``), where every figure reads the paper's numbers:

    1. ``$NER_REFERENCE_DIR/upstream_data_NER`` where the variable is set and that folder exists;
    2. else :func:`fetched_results_dir`, once ``ner fetch --paper-results`` has put every registered file
       there (at its registered size);
    3. else None: the figures then show only ours.
    """
    value = os.environ.get(REFERENCE_ENV)
    if value and (Path(value) / PAPER_RESULTS_FOLDER).is_dir():
        return Path(value) / PAPER_RESULTS_FOLDER
    fetched = fetched_results_dir()
    return fetched if fetched.is_dir() and not missing_paper_results(fetched) else None


# Characters Windows does not allow in file names (the upstream names hold ':').
_NOT_ON_WINDOWS = re.compile(r'[<>:"|?*]')


def local_name(relative: str) -> str:
    """The path a result file gets on this machine: the upstream one, with ':' and the like replaced by
    '_' on Windows."""
    return _NOT_ON_WINDOWS.sub("_", relative) if os.name == "nt" else relative


def missing_paper_results(folder: str | os.PathLike | None = None) -> list[str]:
    """The result files (paths under ``data_NER``) not, or not at their registered size, in ``folder``
    (default :func:`fetched_results_dir`): empty once :func:`fetch_paper_results` has finished there."""
    folder = Path(folder) if folder is not None else fetched_results_dir()
    missing = []
    for relative, entry in paper_results_registry().items():
        path = folder / local_name(relative)
        if not path.is_file() or path.stat().st_size != entry.size:
            missing.append(relative)
    return missing


def fetch_paper_results(
    dest: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the paper's stored results (the original's ``data_NER/Fig4``, ``Fig5``, ``Fig6`` and
    ``Fig8``: 50 files, 12 MB) into ``dest`` (default :func:`fetched_results_dir`), laid out as upstream
    (``Fig4/NPZ_M1/...``, ``Fig8/...``), and return that folder.

    Same verified path as :func:`fetch`: raw files of the pinned commit (``base_url``, else
    $NER_FETCH_URL, else GitHub), each sha256-checked before it is renamed into place, so an
    interrupted run leaves only whole, verified files and a rerun fetches just the rest; a file already
    there that passes the check is kept, one that fails is replaced. A mismatch raises ValueError.
    """
    folder = Path(dest) if dest is not None else fetched_results_dir()
    root = _root(base_url)
    downloader = pooch.HTTPDownloader(progressbar=progress)
    for relative, entry in paper_results_registry().items():
        target = folder / local_name(relative)
        if target.is_file() and _checksum_mismatch(entry, target) is not None:
            target.unlink()
        if not target.is_file():
            _download(downloader, _url(root, entry), entry, target)
    return folder


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
