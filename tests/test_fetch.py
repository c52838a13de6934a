import functools
import hashlib
import http.server
import threading

import pytest

from ner.data import download as fetch_module
from ner.data import fetch, load_session

SMALL = ["Chewie_20150630", "Han_20171207"]  # two small files from the two upstream folders


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
        served.unlink()  # a symlink to the read-only original: replace it, never write through it
        served.write_bytes(bytes(content))


@pytest.fixture
def mirror(tmp_path, data_dir):
    root = tmp_path / "mirror"
    for name in SMALL:
        entry = fetch_module.registry()[name]
        source = data_dir / entry.filename
        if not source.is_file():
            pytest.skip(f"{entry.filename} not in {data_dir}")
        (root / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (root / entry.path).symlink_to(source)
    served = Mirror(root)
    yield served
    served.server.shutdown()
    served.server.server_close()


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def test_fetch_downloads_verifies_and_does_not_repeat(mirror, tmp_path):
    dest = tmp_path / "dest"
    paths = fetch(SMALL, dest=dest, base_url=mirror.url, progress=False)
    registry = fetch_module.registry()
    assert paths == [dest / registry[name].filename for name in SMALL]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in paths)  # no partial files left
    for name, path in zip(SMALL, paths):
        assert sha256_of(path) == registry[name].sha256
    assert load_session("Han_20171207", area="S1", data_dir=dest).n_trials == 244
    assert len(mirror.requests) == 2

    assert fetch(SMALL, dest=dest, base_url=mirror.url, progress=False) == paths
    assert len(mirror.requests) == 2


def test_corrupt_download_is_refused_and_removed(mirror, tmp_path):
    dest = tmp_path / "dest"
    mirror.corrupt("Chewie_20150630")
    entry = fetch_module.registry()["Chewie_20150630"]
    message = f"checksum mismatch for {entry.filename}.*sha256 expected {entry.sha256}, got [0-9a-f]{{64}}"
    with pytest.raises(ValueError, match=message):
        fetch("Chewie_20150630", dest=dest, base_url=mirror.url, progress=False)
    assert list(dest.iterdir()) == []


def test_blob_id_verifies_when_sha256_is_unknown(mirror, tmp_path, monkeypatch):
    entry = fetch_module.registry()["Chewie_20150630"]
    monkeypatch.setattr(fetch_module, "registry", lambda: {entry.name: entry._replace(sha256=None, size=None)})
    dest = tmp_path / "dest"
    (path,) = fetch(entry.name, dest=dest, base_url=mirror.url, progress=False)
    assert sha256_of(path) == entry.sha256

    path.unlink()
    mirror.corrupt(entry.name)
    with pytest.raises(ValueError, match=f"git blob sha1 expected {entry.git_blob_sha1}, got [0-9a-f]{{40}}"):
        fetch(entry.name, dest=dest, base_url=mirror.url, progress=False)
    assert list(dest.iterdir()) == []


def test_damaged_local_copy_is_downloaded_again(mirror, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    entry = fetch_module.registry()["Chewie_20150630"]
    (dest / entry.filename).write_bytes(b"not a session")
    (path,) = fetch(entry.name, dest=dest, base_url=mirror.url, progress=False)
    assert sha256_of(path) == entry.sha256 and len(mirror.requests) == 1


def test_mirror_from_environment_and_default_dest(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_FETCH_URL", mirror.url)
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "env_dest"))
    (path,) = fetch("Han_20171207", progress=False)
    assert path == tmp_path / "env_dest" / "Han_20171207_neural_con_dis_index.mat" and path.is_file()


def test_missing_on_server_is_a_clear_error(mirror, tmp_path):
    mirror.file("Chewie_20150630").unlink()
    with pytest.raises(OSError, match="could not download .*Chewie_20150630.*404"):
        fetch("Chewie_20150630", dest=tmp_path / "dest", base_url=mirror.url, progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_unknown_names_are_listed(tmp_path):
    with pytest.raises(ValueError, match="unknown session.s. Chewie_19990101; sessions that can be fetched: Chewie_"):
        fetch(["Chewie_19990101"], dest=tmp_path, base_url="http://127.0.0.1:9/")
    assert list(tmp_path.iterdir()) == []
