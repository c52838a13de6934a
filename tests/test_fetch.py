import dataclasses
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from ner.data import download as fetch_module
from ner.data import fetch, load_session, synthetic_session, write_session_mat
from ner.data.sessions import FILE_SUFFIX

REAL_SMALL = ["Chewie_20150630", "Han_20171207"]  # two small real files from the two upstream folders

# Synthetic stand-ins, laid out like the two upstream folders. SYNTH_BLOB's registry entry has no sha256
# or size (like 6 of the 19 real entries), so it is verified by git blob id only.
SYNTH_SHA = "Synth_20200101"
SYNTH_BLOB = "Synth_20200102"
SYNTH = [SYNTH_SHA, SYNTH_BLOB]
SYNTH_TRIALS = {SYNTH_SHA: 12, SYNTH_BLOB: 10}


class Mirror:
    """A local HTTP server whose root is laid out like the upstream repository."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def file(self, name):
        return self.root / fetch_module.registry()[name].path

    def corrupt(self, name):
        served = self.file(name)
        content = bytearray(served.read_bytes())
        content[len(content) // 2] ^= 0xFF
        served.unlink()  # may be a symlink to a read-only original: replace it, never write through it
        served.write_bytes(bytes(content))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """Two synthetic session files in a mirror tree, and ner.data.download.registry() describing them.

    Returns the sessions written, by name. registry() is lru_cached in the module; replacing the module
    attribute is enough, since fetch() and session_names() (which sessions.py imports lazily) look it up
    there at call time.
    """
    root = tmp_path / "mirror"
    sessions, entries = {}, {}
    for seed, (name, folder, area) in enumerate([(SYNTH_SHA, "SU_16M1", "M1"), (SYNTH_BLOB, "SU_3S1", "S1")]):
        session = synthetic_session(n_trials=SYNTH_TRIALS[name], n_neurons=6, trial_length=35 + seed * 5, seed=seed)
        session = dataclasses.replace(session, name=name, area=area, trial_ids=None)
        path = f"data/{folder}/{name}{FILE_SUFFIX}"
        served = write_session_mat(session, root / path)
        known_sha = name == SYNTH_SHA
        entries[name] = fetch_module.RegistryEntry(
            path=path,
            git_blob_sha1=fetch_module.git_blob_sha1(served),
            sha256=sha256_of(served) if known_sha else None,
            size=served.stat().st_size if known_sha else None,
        )
        sessions[name] = session
    monkeypatch.setattr(fetch_module, "registry", lambda: dict(entries))
    assert fetch_module.session_names() == SYNTH
    return sessions


@pytest.fixture
def mirror(tmp_path, synthetic):
    served = Mirror(tmp_path / "mirror")
    yield served
    served.close()


@pytest.fixture
def real_mirror(tmp_path, data_dir):
    """A mirror serving (symlinks to) two real files, checked against the packaged registry."""
    root = tmp_path / "real_mirror"
    for name in REAL_SMALL:
        entry = fetch_module.registry()[name]
        source = data_dir / entry.filename
        if not source.is_file():
            pytest.skip(f"{entry.filename} not in {data_dir}")
        (root / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (root / entry.path).symlink_to(source)
    served = Mirror(root)
    yield served
    served.close()


# --- real files: the packaged registry describes them ---------------------------------------------------


def test_registry_matches_upstream_lists(data_dir):
    upstream, sums = data_dir / "UPSTREAM.tsv", data_dir / "SHA256SUMS"
    if not (upstream.is_file() and sums.is_file()):
        pytest.skip(f"UPSTREAM.tsv / SHA256SUMS not in {data_dir}")
    sha = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    lines = upstream.read_text().splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith(("#", "path\t"))]
    expected = {path.rsplit("/", 1)[1]: (path, blob, sha.get(path.rsplit("/", 1)[1])) for path, blob, _, _ in rows}
    registry = fetch_module.registry()
    assert {entry.filename: (entry.path, entry.git_blob_sha1, entry.sha256) for entry in registry.values()} == expected
    assert len(registry) == 19 and sum(entry.sha256 is None for entry in registry.values()) == 6
    for entry in registry.values():
        local = data_dir / entry.filename
        if local.is_file():
            assert fetch_module.git_blob_sha1(local) == entry.git_blob_sha1
            assert local.stat().st_size == entry.size


def test_real_files_pass_the_packaged_registry(real_mirror, tmp_path):
    dest = tmp_path / "dest"
    paths = fetch(REAL_SMALL, dest=dest, base_url=real_mirror.url, progress=False)
    registry = fetch_module.registry()
    for name, path in zip(REAL_SMALL, paths):
        assert sha256_of(path) == registry[name].sha256
    assert load_session("Han_20171207", area="S1", data_dir=dest).n_trials == 244


# --- fetch itself, against synthetic files -----------------------------------------------------------------


def test_fetch_downloads_verifies_and_does_not_repeat(mirror, synthetic, tmp_path):
    dest = tmp_path / "dest"
    paths = fetch(SYNTH, dest=dest, base_url=mirror.url, progress=False)
    registry = fetch_module.registry()
    assert paths == [dest / registry[name].filename for name in SYNTH]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in paths)  # no partial files left
    for name, path in zip(SYNTH, paths):
        assert path.read_bytes() == mirror.file(name).read_bytes()
        assert fetch_module.git_blob_sha1(path) == registry[name].git_blob_sha1
    assert sorted(mirror.requests) == sorted("/" + registry[name].path for name in SYNTH)
    for name, original in synthetic.items():
        loaded = load_session(name, area=original.area, data_dir=dest)
        assert (loaded.n_trials, loaded.trial_length) == (original.n_trials, original.trial_length)
        np.testing.assert_array_equal(loaded.neural, original.neural)
        np.testing.assert_allclose(loaded.labels, original.labels, rtol=1e-6, atol=1e-5)

    # verified files are kept as they are: no second request, not rewritten
    mtimes = [path.stat().st_mtime_ns for path in paths]
    assert fetch(SYNTH, dest=dest, base_url=mirror.url, progress=False) == paths
    assert len(mirror.requests) == 2
    assert [path.stat().st_mtime_ns for path in paths] == mtimes


def test_fetch_all_when_no_names_given(mirror, tmp_path):
    dest = tmp_path / "dest"
    paths = fetch(dest=dest, base_url=mirror.url, progress=False)
    assert [path.name for path in paths] == [name + FILE_SUFFIX for name in SYNTH]
    assert all(path.is_file() for path in paths) and len(mirror.requests) == 2


def test_corrupt_download_is_refused_and_removed(mirror, tmp_path):
    dest = tmp_path / "dest"
    mirror.corrupt(SYNTH_SHA)
    entry = fetch_module.registry()[SYNTH_SHA]
    message = f"checksum mismatch for {entry.filename}.*sha256 expected {entry.sha256}, got [0-9a-f]{{64}}"
    with pytest.raises(ValueError, match=message):
        fetch(SYNTH_SHA, dest=dest, base_url=mirror.url, progress=False)
    assert list(dest.iterdir()) == []  # neither the real name nor a .part file
    assert len(mirror.requests) == 1


def test_blob_id_verifies_when_sha256_is_unknown(mirror, tmp_path):
    entry = fetch_module.registry()[SYNTH_BLOB]
    assert entry.sha256 is None and entry.size is None
    dest = tmp_path / "dest"
    (path,) = fetch(SYNTH_BLOB, dest=dest, base_url=mirror.url, progress=False)
    assert path.read_bytes() == mirror.file(SYNTH_BLOB).read_bytes()

    # a verified local copy is kept on the blob id alone
    assert fetch(SYNTH_BLOB, dest=dest, base_url=mirror.url, progress=False) == [path]
    assert len(mirror.requests) == 1

    path.unlink()
    mirror.corrupt(SYNTH_BLOB)
    with pytest.raises(ValueError, match=f"git blob sha1 expected {entry.git_blob_sha1}, got [0-9a-f]{{40}}"):
        fetch(SYNTH_BLOB, dest=dest, base_url=mirror.url, progress=False)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("name", SYNTH)
def test_damaged_local_copy_is_downloaded_again(mirror, tmp_path, name):
    dest = tmp_path / "dest"
    dest.mkdir()
    good = mirror.file(name).read_bytes()
    (dest / (name + FILE_SUFFIX)).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit off
    (path,) = fetch(name, dest=dest, base_url=mirror.url, progress=False)
    assert path.read_bytes() == good and len(mirror.requests) == 1
    assert list(dest.iterdir()) == [path]


def test_mirror_from_environment_and_default_dest(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_FETCH_URL", mirror.url)
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "env_dest"))
    (path,) = fetch(SYNTH_SHA, progress=False)
    assert path == tmp_path / "env_dest" / f"{SYNTH_SHA}_neural_con_dis_index.mat" and path.is_file()
    assert mirror.requests == ["/" + fetch_module.registry()[SYNTH_SHA].path]


def test_explicit_base_url_overrides_environment(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_FETCH_URL", "http://127.0.0.1:9/nowhere/")
    (path,) = fetch(SYNTH_SHA, dest=tmp_path / "dest", base_url=mirror.url.rstrip("/"), progress=False)
    assert path.is_file() and len(mirror.requests) == 1


def test_missing_on_server_is_a_clear_error(mirror, tmp_path):
    mirror.file(SYNTH_SHA).unlink()
    with pytest.raises(OSError, match=f"could not download .*{SYNTH_SHA}.*404.*NER_FETCH_URL"):
        fetch(SYNTH_SHA, dest=tmp_path / "dest", base_url=mirror.url, progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_unknown_names_are_listed(synthetic, tmp_path):
    dest = tmp_path / "dest"
    with pytest.raises(ValueError) as raised:
        fetch(["Chewie_19990101", SYNTH_SHA], dest=dest, base_url="http://127.0.0.1:9/")
    assert str(raised.value) == f"unknown session(s) Chewie_19990101; sessions that can be fetched: {', '.join(SYNTH)}"
    assert not dest.exists()


def test_unknown_names_are_listed_from_packaged_registry(tmp_path):
    with pytest.raises(ValueError, match="unknown session.s. Chewie_19990101; sessions that can be fetched: Chewie_"):
        fetch(["Chewie_19990101"], dest=tmp_path, base_url="http://127.0.0.1:9/")
    assert list(tmp_path.iterdir()) == []


# --- load_session's hint for a session that is not on disk -------------------------------------------------


@pytest.mark.parametrize("name", ["Chewie_20161007", "Han_20171201"])  # packaged registry: no data needed
def test_missing_fetchable_session_names_the_fetch_call(tmp_path, name):
    with pytest.raises(FileNotFoundError) as raised:
        load_session(name, data_dir=tmp_path)
    message = str(raised.value)
    assert "ner.data.fetch([" in message and repr(name) in message
    assert f"ner fetch {name}" in message
    assert "ner.data.download" not in message


def test_missing_fetchable_session_uses_current_registry(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"ner fetch {SYNTH_BLOB}.*ner\.data\.fetch\(\[{SYNTH_BLOB!r}\]"):
        load_session(SYNTH_BLOB, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=f"sessions that can be fetched: {', '.join(SYNTH)}$"):
        load_session("Chewie_20161007", data_dir=tmp_path)  # no longer fetchable once the registry is replaced


# --- the paper's stored results (data_NER/Fig4, Fig5, Fig6, Fig8) --------------------------------------------

# Paths under data_NER: a Fig 4 table, and names shaped like the upstream Fig8 ones (spaces, ':', '[', ',' and a
# subfolder), so that the URL quoting is exercised.
RESULT_FILES = ["Fig4/NPZ_M1/NER_Chewie2016.npz",
                "Fig8/Type: curve-straight=[13, 38]_parameters_5000itr_lr0.0001.npz",
                "Fig8/Supp_Cebra/Type: curve-up-down=[37, 1]_parameters_5000itr_lr0.0001.npz"]


@pytest.fixture
def results_mirror(tmp_path, monkeypatch):
    """A mirror serving three small result files under data_NER/, and paper_results_registry() describing them."""
    root = tmp_path / "mirror"
    entries = {}
    for seed, relative in enumerate(RESULT_FILES):
        served = root / fetch_module.PAPER_RESULTS_PREFIX / relative
        served.parent.mkdir(parents=True, exist_ok=True)
        np.savez(served, cebra_veldir_train=np.random.default_rng(seed).normal(size=(200, 3)))
        entries[relative] = fetch_module.RegistryEntry(
            path=fetch_module.PAPER_RESULTS_PREFIX + relative, git_blob_sha1=fetch_module.git_blob_sha1(served),
            sha256=sha256_of(served), size=served.stat().st_size)
    monkeypatch.setattr(fetch_module, "paper_results_registry", lambda: dict(entries))
    served = Mirror(root)
    served.file = lambda relative: root / entries[relative].path
    yield served
    served.close()


def _tree(folder):
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_packaged_results_registry_lists_figs_4_5_6_and_8():
    entries = fetch_module.paper_results_registry()
    counts = {fig: sum(relative.startswith(fig + "/") for relative in entries) for fig in ("Fig4", "Fig5", "Fig6", "Fig8")}
    assert counts == {"Fig4": 25, "Fig5": 6, "Fig6": 3, "Fig8": 16} and len(entries) == 50
    fig8 = [entry.size for relative, entry in entries.items() if relative.startswith("Fig8/")]
    assert sum(fig8) == 11_699_904
    assert sum(relative.startswith("Fig8/Supp_Cebra/") for relative in entries) == 8
    assert "Fig4/NPZ_M1/NER_Chewie2015.npz" in entries and "Fig5/NER_Chewie_kNN.npz" in entries
    for relative, entry in entries.items():
        assert entry.path == "data_NER/" + relative and relative.endswith(".npz")
        assert len(entry.sha256) == 64 and len(entry.git_blob_sha1) == 40


def test_packaged_results_registry_matches_the_reference_copy(reference_dir):
    folder = reference_dir / "upstream_data_NER"
    entries = fetch_module.paper_results_registry()
    assert [path for path in _tree(folder) if path.split("/")[0] in ("Fig4", "Fig5", "Fig6", "Fig8")] == sorted(entries)
    for relative, entry in entries.items():
        path = folder / relative
        assert path.stat().st_size == entry.size
        assert fetch_module.sha256(path) == entry.sha256
        assert fetch_module.git_blob_sha1(path) == entry.git_blob_sha1
    assert fetch_module.missing_paper_results(folder) == []


def test_results_download_verify_and_do_not_repeat(results_mirror, tmp_path):
    dest = tmp_path / "results"
    assert fetch_module.missing_paper_results(dest) == RESULT_FILES
    assert fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False) == dest
    assert _tree(dest) == sorted(RESULT_FILES)  # the upstream layout, and no partial file left
    for relative in RESULT_FILES:
        assert (dest / relative).read_bytes() == results_mirror.file(relative).read_bytes()
    # the requests were percent-encoded (the server decodes them back to the names above)
    assert len(results_mirror.requests) == 3
    assert all(" " not in request for request in results_mirror.requests)
    assert all("%20" in request and "%3A" in request for request in results_mirror.requests if "Fig8" in request)
    assert fetch_module.missing_paper_results(dest) == []

    mtimes = {relative: (dest / relative).stat().st_mtime_ns for relative in RESULT_FILES}
    fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    assert len(results_mirror.requests) == 3  # verified files are kept as they are
    assert {relative: (dest / relative).stat().st_mtime_ns for relative in RESULT_FILES} == mtimes


def test_corrupt_result_is_refused_and_removed(results_mirror, tmp_path):
    dest = tmp_path / "results"
    served = results_mirror.file(RESULT_FILES[1])
    content = bytearray(served.read_bytes())
    content[len(content) // 2] ^= 0xFF
    served.write_bytes(bytes(content))
    entry = fetch_module.paper_results_registry()[RESULT_FILES[1]]
    with pytest.raises(ValueError, match=f"checksum mismatch for .*sha256 expected {entry.sha256}"):
        fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    # the file before it was kept; the bad one left nothing behind, neither its name nor a .part file
    assert _tree(dest) == [RESULT_FILES[0]]
    assert fetch_module.missing_paper_results(dest) == RESULT_FILES[1:]


def test_interrupted_results_download_resumes(results_mirror, tmp_path):
    dest = tmp_path / "results"
    missing = results_mirror.file(RESULT_FILES[2])
    kept = missing.read_bytes()
    missing.unlink()
    with pytest.raises(OSError, match="could not download .*404.*NER_FETCH_URL"):
        fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    assert _tree(dest) == sorted(RESULT_FILES[:2])
    missing.write_bytes(kept)
    results_mirror.requests.clear()
    fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    assert len(results_mirror.requests) == 1 and fetch_module.missing_paper_results(dest) == []


def test_damaged_local_result_is_downloaded_again(results_mirror, tmp_path):
    dest = tmp_path / "results"
    fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    good = (dest / RESULT_FILES[0]).read_bytes()
    (dest / RESULT_FILES[0]).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit off
    results_mirror.requests.clear()
    fetch_module.fetch_paper_results(dest, base_url=results_mirror.url, progress=False)
    assert (dest / RESULT_FILES[0]).read_bytes() == good and len(results_mirror.requests) == 1


def test_results_default_folder_and_cli(results_mirror, tmp_path, monkeypatch, capsys):
    from ner.cli import main

    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NER_FETCH_URL", results_mirror.url)
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)
    fetched = tmp_path / "data" / "upstream_data_NER"
    assert fetch_module.fetched_results_dir() == fetched
    assert fetch_module.paper_results_dir() is None
    assert main(["fetch", "--paper-results"]) == 0
    out = capsys.readouterr().out
    assert f"3 stored result files of the paper (its data_NER/Fig4, Fig5, Fig6, Fig8), verified, in {fetched}" in out
    assert "ner figures" in out
    assert _tree(fetched) == sorted(RESULT_FILES)
    assert fetch_module.paper_results_dir() == fetched

    assert main(["fetch", "--paper-results", "--dest", str(tmp_path / "copy" / "upstream_data_NER")]) == 0
    assert f"NER_REFERENCE_DIR={tmp_path / 'copy'}" in capsys.readouterr().out
    assert main(["fetch", "--paper-results", "--dest", str(tmp_path / "elsewhere")]) == 0
    assert "set NER_REFERENCE_DIR=<folder>" in capsys.readouterr().out
    assert main(["fetch", "--paper-results", "Chewie_20161007"]) == 2
    assert "drop Chewie_20161007" in capsys.readouterr().err

    monkeypatch.delenv("NER_DATA_DIR")
    assert fetch_module.fetched_results_dir() == fetch_module._CHECKOUT / "data" / "upstream_data_NER"
    assert fetch_module.fetched_results_dir().is_absolute()


def test_one_resolver_for_the_papers_results(results_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NER_REFERENCE_DIR", raising=False)
    fetched = fetch_module.fetch_paper_results(base_url=results_mirror.url, progress=False)
    assert fetch_module.paper_results_dir() == fetched
    (fetched / RESULT_FILES[0]).write_bytes(b"short")  # not at its registered size: not used
    assert fetch_module.paper_results_dir() is None
    copy = tmp_path / "reference" / "upstream_data_NER"
    copy.mkdir(parents=True)
    monkeypatch.setenv("NER_REFERENCE_DIR", str(copy.parent))  # the variable wins, read in place as it is
    assert fetch_module.paper_results_dir() == copy
    monkeypatch.setenv("NER_REFERENCE_DIR", str(tmp_path / "nothing_here"))  # set, but no such folder
    assert fetch_module.paper_results_dir() is None


def test_local_names_on_windows(monkeypatch):
    relative = RESULT_FILES[1]
    assert fetch_module.local_name(relative) == relative
    monkeypatch.setattr(fetch_module.os, "name", "nt")
    assert fetch_module.local_name(relative) == relative.replace("Type:", "Type_")
