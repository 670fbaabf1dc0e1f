import gzip
import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlpcli.data.download import Archive, download, downloadable, fetch
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
    path = fetch(Archive("tiny", url, (("tiny.tar.gz", md5),)), dest, progress=False)
    assert path == dest / "tiny"
    assert (path / "tiny-batches" / "data_batch_1").read_bytes() == b"abc"
    assert sorted(p.name for p in dest.iterdir()) == ["tiny"]
    assert [p.name for p in path.iterdir()] == ["tiny-batches"]  # the archive itself is gone


def test_fetch_keeps_plain_files(server, tmp_path):
    folder, url = server
    files = tuple((name, serve(folder, name, gzip.compress(name.encode()))) for name in ("a-idx3-ubyte.gz", "b.gz"))
    path = fetch(Archive("idx", url, files), tmp_path / "dest", progress=True)
    assert gzip.decompress((path / "b.gz").read_bytes()) == b"b.gz"
    assert sorted(p.name for p in path.iterdir()) == ["a-idx3-ubyte.gz", "b.gz"]


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    folder, url = server
    serve(folder, "tiny.tar.gz", tar_gz({"x": b"1"}))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"tiny.tar.gz is corrupt: MD5 [0-9a-f]{32}, expected 0{32}"):
        fetch(Archive("tiny", url, (("tiny.tar.gz", "0" * 32),)), dest, progress=False)
    assert list(dest.iterdir()) == []


def test_missing_file_gives_http_error_and_leaves_nothing_behind(server, tmp_path):
    folder, url = server
    md5 = serve(folder, "first.gz", b"first")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="second.gz failed: HTTP 404"):
        fetch(Archive("two", url, (("first.gz", md5), ("second.gz", "0" * 32))), dest, progress=False)
    assert list(dest.iterdir()) == []


def test_unreachable_server_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="download of http://127.0.0.1:9/x.gz failed"):
        fetch(Archive("x", "http://127.0.0.1:9", (("x.gz", "0" * 32),)), tmp_path, progress=False)


def test_members_escaping_the_folder_are_refused(server, tmp_path):
    folder, url = server
    md5 = serve(folder, "evil.tar.gz", tar_gz({"../escaped.txt": b"x"}))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="cannot unpack evil.tar.gz"):
        fetch(Archive("evil", url, (("evil.tar.gz", md5),)), dest, progress=False)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_download_uses_the_official_file_name_and_checksum(server, tmp_path):
    folder, url = server
    serve(folder, "cifar-10-python.tar.gz", tar_gz({"x": b"not cifar"}))
    with pytest.raises(DataError, match=f"expected {downloadable()['cifar10'].files[0][1]}"):
        download("cifar10", tmp_path / "dest", base_url=url, progress=False)


def test_existing_folder_is_returned_without_downloading(tmp_path):
    (tmp_path / "mnist").mkdir()
    assert download("mnist", tmp_path, base_url="http://127.0.0.1:9/", progress=False) == tmp_path / "mnist"


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(DataError, match="available: cifar10, cifar100, mnist, fashion-mnist"):
        download("imagenet", tmp_path)
