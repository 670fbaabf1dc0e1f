import gzip
import hashlib
import io
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from mlpcli.cli import cli
from mlpcli.data import download as download_module
from mlpcli.data.download import Archive, download, fetch
from mlpcli.errors import DataError


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder, base URL): files put in folder are served over HTTP on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/files/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def responder():
    """start(respond) -> base URL of a server on 127.0.0.1 that answers every GET with respond(handler, stop);
    `stop` (a threading.Event) is set at teardown, so that a response waiting on it ends."""
    stop, servers = threading.Event(), []

    def start(respond):
        def do_get(handler):
            try:
                respond(handler, stop)
            except OSError:             # the client hung up
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (QuietHandler,), {"do_GET": do_get}))
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    stop.set()
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def send(handler, stop, blocks, pause=0.0, length=None):
    """Answer 200 with `blocks` (bytes, each flushed, `pause` seconds apart) and an optional Content-Length."""
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    for block in blocks:
        if stop.wait(pause):
            return
        handler.wfile.write(block)
        handler.wfile.flush()


@pytest.fixture
def fast_stalls(monkeypatch):
    """A download stalls when it brings less than 1,000 bytes in 0.4 s."""
    monkeypatch.setattr(download_module, "STALL_SECONDS", 0.4)
    monkeypatch.setattr(download_module, "STALL_BYTES", 1000)


def tar_gz(members):
    """A .tar.gz archive (bytes) holding {name: content bytes}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def serve(folder, name, content):
    (folder / "files").mkdir(exist_ok=True)
    (folder / "files" / name).write_bytes(content)
    return hashlib.md5(content).hexdigest()


def test_fetch_verifies_and_unpacks_an_archive(server, tmp_path):
    folder, url = server
    md5 = serve(folder, "tiny.tar.gz", tar_gz({"tiny-batches/data_batch_1": b"abc", "tiny-batches/meta": b"m"}))
    dest = tmp_path / "dest"
    path = fetch(Archive("tiny", url, (("tiny.tar.gz", md5, (folder / "files" / "tiny.tar.gz").stat().st_size),)),
                 dest, progress=False)
    assert path == dest / "tiny"
    assert (path / "tiny-batches" / "data_batch_1").read_bytes() == b"abc"
    assert sorted(p.name for p in dest.iterdir()) == ["tiny"]
    assert [p.name for p in path.iterdir()] == ["tiny-batches"]  # the archive itself is gone


def test_fetch_keeps_plain_files(server, tmp_path):
    folder, url = server
    contents = {name: gzip.compress(name.encode()) for name in ("a-idx3-ubyte.gz", "b.gz")}
    files = tuple((name, serve(folder, name, content), len(content)) for name, content in contents.items())
    path = fetch(Archive("idx", url, files), tmp_path / "dest", progress=True)
    assert gzip.decompress((path / "b.gz").read_bytes()) == b"b.gz"
    assert sorted(p.name for p in path.iterdir()) == ["a-idx3-ubyte.gz", "b.gz"]


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    folder, url = server
    content = tar_gz({"x": b"1"})
    serve(folder, "tiny.tar.gz", content)
    dest = tmp_path / "new" / "dest"
    with pytest.raises(DataError, match=r"tiny.tar.gz is corrupt: MD5 [0-9a-f]{32}, expected 0{32}"):
        fetch(Archive("tiny", url, (("tiny.tar.gz", "0" * 32, len(content)),)), dest, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]   # the folders made for it are gone too


def test_missing_file_gives_http_error_and_leaves_nothing_behind(server, tmp_path):
    folder, url = server
    md5 = serve(folder, "first.gz", b"first")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match="second.gz failed: HTTP 404"):
        fetch(Archive("two", url, (("first.gz", md5, 5), ("second.gz", "0" * 32, 1))), dest, progress=False)
    assert list(dest.iterdir()) == []                                   # a folder that was there stays


def test_unreachable_server_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="download of http://127.0.0.1:9/x.gz failed"):
        fetch(Archive("x", "http://127.0.0.1:9", (("x.gz", "0" * 32, 1),)), tmp_path, progress=False)


def test_a_content_length_other_than_the_official_size_is_refused_up_front(server, tmp_path):
    folder, url = server
    md5 = serve(folder, "x.gz", b"12345")
    with pytest.raises(DataError, match=r"x.gz failed: its Content-Length is '5', not the 100,000 bytes of the "
                                        r"official file; check the mirror URL$"):
        fetch(Archive("x", url, (("x.gz", md5, 100_000),)), tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()


def test_an_endless_body_is_cut_one_byte_past_the_official_size(responder, tmp_path):
    url = responder(lambda handler, stop: send(handler, stop, iter(lambda: b"\0" * 65536, None)))
    started = time.monotonic()
    with pytest.raises(DataError, match=r"x.gz failed: the server sends more than the 100,000 bytes of the "
                                        "official file"):
        fetch(Archive("x", url, (("x.gz", "0" * 32, 100_000),)), tmp_path / "dest", progress=False)
    assert time.monotonic() - started < 5 and not (tmp_path / "dest").exists()


def test_a_short_transfer_is_reported_as_such(responder, tmp_path):
    url = responder(lambda handler, stop: send(handler, stop, [b"x" * 5000], length=100_000))
    with pytest.raises(DataError, match=r"x.gz failed: the transfer stopped after 5,000 of 100,000 bytes; try again$"):
        fetch(Archive("x", url, (("x.gz", "0" * 32, 100_000),)), tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("blocks", [[b"x"] * 1000, []], ids=["drip", "silent"])
def test_a_stalled_transfer_is_given_up(blocks, responder, fast_stalls, tmp_path):
    url = responder(lambda handler, stop: send(handler, stop, blocks, pause=0.05) or stop.wait(10))
    started = time.monotonic()
    with pytest.raises(DataError, match=r"x.gz stalled: less than 1,000 bytes in 0.4 s, after \d+ of 100,000 bytes; "
                                        "try again or pass a mirror URL$"):
        fetch(Archive("x", url, (("x.gz", "0" * 32, 100_000),)), tmp_path / "dest", progress=False)
    assert time.monotonic() - started < 3 and not (tmp_path / "dest").exists()


def test_a_slow_but_steady_transfer_completes(responder, fast_stalls, tmp_path):
    content = bytes(range(256)) * 16                                     # 4,096 bytes in ~1.2 s: 3 windows
    url = responder(lambda handler, stop: send(handler, stop, [content[i:i + 200] for i in range(0, 4096, 200)],
                                               pause=0.06, length=len(content)))
    md5 = hashlib.md5(content).hexdigest()
    path = fetch(Archive("x", url, (("x.gz", md5, len(content)),)), tmp_path / "dest", progress=False)
    assert (path / "x.gz").read_bytes() == content


def test_members_escaping_the_folder_are_refused(server, tmp_path):
    folder, url = server
    content = tar_gz({"../escaped.txt": b"x"})
    md5 = serve(folder, "evil.tar.gz", content)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="cannot unpack evil.tar.gz"):
        fetch(Archive("evil", url, (("evil.tar.gz", md5, len(content)),)), dest, progress=False)
    assert not dest.exists() and not (tmp_path / "escaped.txt").exists()


def test_download_uses_the_official_file_name_and_size(server, tmp_path):
    folder, url = server
    serve(folder, "cifar-10-python.tar.gz", tar_gz({"x": b"not cifar"}))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz failed: its Content-Length is '[0-9]+', not the "
                                        "170,498,071 bytes"):
        download("cifar10", tmp_path / "dest", base_url=url, progress=False)


def test_existing_folder_is_returned_without_downloading(tmp_path):
    (tmp_path / "mnist").mkdir()
    assert download("mnist", tmp_path, base_url="http://127.0.0.1:9/", progress=False) == tmp_path / "mnist"


def test_an_existing_file_in_the_way_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").write_bytes(b"not a folder")
    result = CliRunner().invoke(cli, ["data", "download", "mnist", "--dir", ".", "--mirror", "http://127.0.0.1:9/"])
    assert result.exit_code == 1
    assert result.output == "Error: mnist exists and is not a folder\n"


def test_a_failed_download_leaves_no_data_folder(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["data", "download", "mnist", "--mirror", server[1]])
    assert result.exit_code == 1 and "HTTP 404" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(DataError, match="available: cifar10, cifar100, mnist, fashion-mnist"):
        download("imagenet", tmp_path)
