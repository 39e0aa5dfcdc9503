"""The download path against a small HTTP server on 127.0.0.1 (nothing else is contacted)."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ciinv.errors import CiinvError
from ciinv.models import download, registry
from ciinv.models.download import fetch, fetch_models
from ciinv.models.catalogue import CATALOGUE, ModelFile

DATA = hashlib.sha256(b"seed").digest() * 8192  # 256 kB of stand-in checkpoint
DATA_SHA = hashlib.sha256(DATA).hexdigest()


class Server:
    """Serves ``files`` ({path: bytes}); records each request's path and Range header.

    honour_range: answer Range with 206 (else ignore it and send the whole file with 200).
    cut_first: send only this many body bytes in the first response, then close the connection.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        self.cut_first: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first is not None:
                    body, server.cut_first = body[: server.cut_first], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server(monkeypatch):
    # A proxy from the environment would take these requests off the machine.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, srv.httpd.shutdown)  # stops itself even if a test hangs
    watchdog.start()
    try:
        yield srv
    finally:
        watchdog.cancel()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(5)


def entry_for(url: str, **changes) -> ModelFile:
    fields = dict(
        name="tiny",
        filename="tiny.pt",
        url=url,
        sha256=DATA_SHA,
        size=len(DATA),
        licence="test",
        used_by="models.generator",
        kind="stylegan2-rosinality",
        note="served from loopback by the test",
    )
    fields.update(changes)
    return ModelFile(**fields)


def test_served_file_downloads_and_verifies(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    dest = tmp_path / "models" / "tiny.pt"
    assert fetch(entry_for(server.url("/tiny.pt")), dest, progress=False) == dest
    assert dest.read_bytes() == DATA
    assert not (tmp_path / "models" / "tiny.pt.partial").exists()
    assert server.requests == [("/tiny.pt", None)]


def test_partial_download_is_resumed_with_range(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    dest = tmp_path / "tiny.pt"
    (tmp_path / "tiny.pt.partial").write_bytes(DATA[:100_000])
    fetch(entry_for(server.url("/tiny.pt")), dest, progress=False)
    assert server.requests == [("/tiny.pt", "bytes=100000-")]
    assert dest.read_bytes() == DATA


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    server.honour_range = False
    dest = tmp_path / "tiny.pt"
    # Bytes that are not the file's start: appending the 200 body to them would be wrong.
    (tmp_path / "tiny.pt.partial").write_bytes(b"\xff" * 5000)
    fetch(entry_for(server.url("/tiny.pt")), dest, progress=False)
    assert server.requests == [("/tiny.pt", "bytes=5000-")]
    assert dest.read_bytes() == DATA


def test_interrupted_transfer_is_resumed_by_the_next_try(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    server.cut_first = 70_000
    dest = tmp_path / "tiny.pt"
    fetch(entry_for(server.url("/tiny.pt")), dest, progress=False, retry_wait=0)
    assert server.requests == [("/tiny.pt", None), ("/tiny.pt", "bytes=70000-")]
    assert dest.read_bytes() == DATA


def test_complete_partial_with_unknown_size_is_checked_not_refetched(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    dest = tmp_path / "tiny.pt"
    (tmp_path / "tiny.pt.partial").write_bytes(DATA)
    fetch(entry_for(server.url("/tiny.pt"), size=None), dest, progress=False)
    assert server.requests == [("/tiny.pt", f"bytes={len(DATA)}-")]  # answered 416 */len
    assert dest.read_bytes() == DATA


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    dest = tmp_path / "tiny.pt"
    expected = hashlib.sha256(b"another file").hexdigest()
    url = server.url("/tiny.pt")
    with pytest.raises(CiinvError) as err:
        fetch(entry_for(url, sha256=expected), dest, progress=False)
    message = str(err.value)
    assert url in message and expected in message and DATA_SHA in message
    assert not dest.exists()
    assert not (tmp_path / "tiny.pt.partial").exists()


def test_wrong_size_raises_and_leaves_nothing(server, tmp_path):
    server.files["/tiny.pt"] = DATA
    dest = tmp_path / "tiny.pt"
    with pytest.raises(CiinvError, match=f"expected {len(DATA) + 1} bytes"):
        fetch(entry_for(server.url("/tiny.pt"), size=len(DATA) + 1), dest, progress=False, retry_wait=0)
    assert not dest.exists() and not (tmp_path / "tiny.pt.partial").exists()


def test_published_prefix_is_checked(server, tmp_path):
    server.files["/tiny-x.pt"] = DATA
    url = server.url("/tiny-x.pt")
    ok = fetch(url, tmp_path / "a.pt", progress=False, sha256_prefix=DATA_SHA[:10])
    assert ok.read_bytes() == DATA
    wrong = "0" * 10 if not DATA_SHA.startswith("0" * 10) else "1" * 10
    with pytest.raises(CiinvError, match=f"starting {wrong}"):
        fetch(url, tmp_path / "b.pt", progress=False, sha256_prefix=wrong)
    assert not (tmp_path / "b.pt").exists()


def test_missing_url_names_it_and_mirror_is_used(server, tmp_path):
    server.files["/mirror/tiny.pt"] = DATA
    dest = tmp_path / "tiny.pt"
    with pytest.raises(CiinvError) as err:
        fetch(entry_for(server.url("/gone.pt")), dest, progress=False)
    assert server.url("/gone.pt") in str(err.value) and "404" in str(err.value)
    assert not dest.exists()

    entry = entry_for(server.url("/gone.pt"), mirrors=(server.url("/mirror/tiny.pt"),))
    fetch(entry, dest, progress=False)
    assert dest.read_bytes() == DATA


def test_fetch_models_skips_verified_and_replaces_corrupt(server, tmp_path, monkeypatch):
    server.files["/tiny.pt"] = DATA
    entry = entry_for(server.url("/tiny.pt"), filename="sub/tiny.pt")
    monkeypatch.setitem(CATALOGUE, "tiny", entry)
    models_dir = tmp_path / "models"

    assert fetch_models(["tiny"], models_dir, progress=False) == [models_dir / "sub" / "tiny.pt"]
    assert len(server.requests) == 1
    assert registry.status("tiny", models_dir) == "present"

    fetch_models(["tiny"], models_dir, progress=False)
    assert len(server.requests) == 1  # present and verified: not downloaded again

    (models_dir / "sub" / "tiny.pt").write_bytes(b"corrupt")
    fetch_models(["sub/tiny.pt"], models_dir, progress=False)  # by filename, as the Snakemake rule does
    assert len(server.requests) == 2
    assert (models_dir / "sub" / "tiny.pt").read_bytes() == DATA

    with pytest.raises(CiinvError, match="not a registry model name"):
        fetch_models(["no-such-model"], models_dir, progress=False)


def test_unreachable_host_keeps_partial_and_says_how_to_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    (tmp_path / "tiny.pt.partial").write_bytes(DATA[:10])
    # Port 9 (discard) on loopback: refused at once, no packet leaves the machine.
    with pytest.raises(CiinvError) as err:
        fetch(entry_for("http://127.0.0.1:9/tiny.pt"), tmp_path / "tiny.pt", progress=False, attempts=2)
    message = str(err.value)
    assert "try 2/2" in message and "resumes" in message
    assert (tmp_path / "tiny.pt.partial").read_bytes() == DATA[:10]
