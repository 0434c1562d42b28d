"""Dataset download: a local HTTP server on 127.0.0.1 stands in for GroupLens."""

from __future__ import annotations

import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dataio.datasets import DatasetError, load_dataset
from dataio.download import DownloadError, download_dataset

# A local HTTP server stands in for GroupLens.
pytestmark = pytest.mark.slow

GENRES = ["unknown", "Action"] + [f"G{i}" for i in range(2, 19)]


def ml100k_zip(top: str = "ml-100k/", with_data: bool = True) -> bytes:
    """A tiny but valid MovieLens 100K archive."""
    flags = "|".join(["0", "1"] + ["0"] * 17)
    files = {
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)),
        "u.item": f"1|Heat (1995)|15-Dec-1995||http://x|{flags}\n",
    }
    if with_data:
        files["u.data"] = "1\t1\t5\t100\n2\t1\t4\t200\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(top + name, text)
    return buffer.getvalue()


@dataclass
class Server:
    base: str
    routes: dict[str, bytes]


@pytest.fixture
def server() -> Iterator[Server]:
    """Serve ``routes`` (path -> body) on 127.0.0.1; anything else is a 404."""
    routes: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_happy_path_unzips_and_loads(tmp_path: Path, server: Server) -> None:
    server.routes["/ml-100k.zip"] = ml100k_zip()
    folder = download_dataset("ml-100k", tmp_path, url=server.base + "/ml-100k.zip", timeout=5)
    assert folder == tmp_path / "ml-100k" and (folder / "u.data").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k"]  # no scratch files left
    ds = load_dataset("ml-100k", tmp_path)
    assert ds.item_texts == ["Heat (1995). Genres: Action."] and ds.n_users == 2


def test_flat_archive_is_accepted(tmp_path: Path, server: Server) -> None:
    server.routes["/flat.zip"] = ml100k_zip(top="")
    folder = download_dataset("ml-100k", tmp_path, url=server.base + "/flat.zip", timeout=5)
    assert (folder / "u.item").is_file()


def test_unreachable_host_is_a_clear_download_error(tmp_path: Path) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/ml-100k.zip"
    with pytest.raises(DownloadError) as err:
        download_dataset("ml-100k", tmp_path, url=url, timeout=5)
    message = str(err.value)
    assert message.startswith(f"could not reach 127.0.0.1:{port}: ")
    assert f"download it by hand from {url} and unzip into {tmp_path}" in message
    assert not (tmp_path / "ml-100k").exists()


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("/missing.zip", None, "answered HTTP 404"),
        ("/garbage.zip", b"not a zip", "not a zip file"),
        ("/empty.zip", ml100k_zip(with_data=False), "does not contain u.data"),
    ],
)
def test_bad_downloads(
    tmp_path: Path, server: Server, route: str, body: bytes | None, message: str
) -> None:
    if body is not None:
        server.routes[route] = body
    with pytest.raises(DownloadError, match=message):
        download_dataset("ml-100k", tmp_path, url=server.base + route, timeout=5)
    assert not (tmp_path / "ml-100k").exists()


def test_existing_copy_is_kept(tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("kept")
    url = f"http://127.0.0.1:{closed_port()}/ml-100k.zip"
    assert download_dataset("ml-100k", tmp_path, url=url) == tmp_path / "ml-100k"
    assert (tmp_path / "ml-100k" / "u.data").read_text() == "kept"


@pytest.mark.parametrize(
    ("name", "source"), [("amazon-scientific", "UniSRec"), ("amazon-games", "LLMRank")]
)
def test_amazon_sets_explain_manual_placement(tmp_path: Path, name: str, source: str) -> None:
    with pytest.raises(DatasetError) as err:
        download_dataset(name, tmp_path)
    message = str(err.value)
    assert not isinstance(err.value, DownloadError)
    assert "Amazon Review Data 2018" in message and source in message
    assert str(tmp_path / name) in message


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="known datasets are ml-100k, amazon-scientific"):
        download_dataset("netflix", tmp_path)
