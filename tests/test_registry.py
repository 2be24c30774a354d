import hashlib
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from drdfl.data import load_series, registry
from drdfl.data.registry import DATASETS, Dataset, fetch, get_dataset, resolve, sha256_file
from drdfl.errors import DataError, DatasetNotFoundError

BODY = (
    b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
    b"2023-11-16 18:15:46.6805900,374,44\n"
    b"2023-11-16 18:15:52.0000000,10,1\n"
)


class _Handler(BaseHTTPRequestHandler):
    """Serves BODY at /good.csv and /wrong.csv, a cut-off body at /truncated.csv."""

    def do_GET(self):
        if self.path not in ("/good.csv", "/truncated.csv"):
            self.send_error(404)
            return
        self.send_response(200)
        declared = len(BODY) + (500 if self.path == "/truncated.csv" else 0)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(BODY)  # then the connection closes: short of the declared length

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty cache and no data directory from the environment."""
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DRDFL_DATA_DIR", raising=False)
    monkeypatch.delenv("DRDFL_OFFLINE", raising=False)
    return tmp_path


BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


def tiny(url, sha256=BODY_SHA256):
    return Dataset("tiny-conv", "tiny/tiny_conv.csv", "azure", "test trace", sha256, url)


def leftovers(root):
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_download_checks_and_places_the_file(server, env):
    path = fetch(tiny(f"{server}/good.csv"))
    assert path == env / "cache" / "tiny" / "tiny_conv.csv"
    assert path.read_bytes() == BODY
    assert leftovers(env / "cache") == ["tiny_conv.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # a file like any other


def test_download_without_a_checksum_warns(server, env):
    with pytest.warns(UserWarning, match="no checksum is recorded for tiny-conv"):
        path = fetch(tiny(f"{server}/good.csv", sha256=None))
    assert path.read_bytes() == BODY


def test_checksum_mismatch_keeps_nothing(server, env):
    with pytest.raises(DataError, match=r"checksum mismatch for tiny-conv .* expected sha256 0+"):
        fetch(tiny(f"{server}/good.csv", sha256="0" * 64))
    assert leftovers(env) == []


def test_truncated_download_keeps_nothing(server, env):
    with pytest.raises(
        DataError, match=rf"tiny-conv .* truncated: {len(BODY)} of {len(BODY) + 500} bytes"
    ):
        fetch(tiny(f"{server}/truncated.csv"))
    assert leftovers(env) == []


def test_http_error_and_refused_connection_say_where_to_place_the_file(server, env):
    with pytest.raises(
        DatasetNotFoundError,
        match=r"cannot be downloaded \(Not Found\); place "
        r"tiny_conv.csv from http://127.0.0.1:\d+/missing.csv at <data dir>",
    ):
        fetch(tiny(f"{server}/missing.csv"))
    with pytest.raises(DatasetNotFoundError, match=r"cannot be downloaded .*refused"):
        fetch(tiny("http://127.0.0.1:9/good.csv"))  # the discard port: nothing listens
    assert leftovers(env) == []


def test_offline_fails_at_once_naming_the_place(env, monkeypatch):
    monkeypatch.setenv("DRDFL_OFFLINE", "1")
    data = env / "data"
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"azure-2023-conv is not available \(DRDFL_OFFLINE is set\); place "
        rf"AzureLLMInferenceTrace_conv.csv from https://raw.githubusercontent.com/\S+ at "
        rf"{data}/azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
    ):
        resolve("azure-2023-conv", data)


def test_dataset_without_url_cannot_download(env):
    with pytest.raises(DatasetNotFoundError, match="paper-2023-conv .* has no download URL"):
        resolve("paper-2023-conv")


def test_resolution_order(env, monkeypatch, server):
    """Explicit path, then the data_dir argument (else DRDFL_DATA_DIR), then the cache,
    then a download."""
    monkeypatch.setattr(registry, "DATASETS", {"tiny-conv": tiny(f"{server}/good.csv")})
    rel = "tiny/tiny_conv.csv"
    arg_dir, env_dir, cache = env / "arg", env / "envdir", env / "cache"
    for root in (arg_dir, env_dir):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(BODY)

    explicit = env / "mine.csv"
    explicit.write_bytes(BODY)
    assert resolve(explicit, arg_dir) == (explicit, None)
    monkeypatch.setenv("DRDFL_DATA_DIR", str(env_dir))
    assert resolve("tiny-conv", arg_dir)[0] == arg_dir / rel
    assert resolve("tiny-conv")[0] == env_dir / rel
    monkeypatch.setenv("DRDFL_DATA_DIR", str(env / "empty"))
    downloaded, dataset = resolve("tiny-conv")  # nowhere local yet: fetched into the cache
    assert downloaded == cache / rel and dataset.name == "tiny-conv"
    monkeypatch.setattr(registry, "DATASETS", {"tiny-conv": tiny(f"{server}/missing.csv")})
    assert resolve("tiny-conv")[0] == cache / rel  # the cache is used before any download
    series = load_series("tiny-conv")
    assert series.name == "tiny-conv"
    np.testing.assert_array_equal(series.values, [374.0, 10.0])


def test_unknown_name_suggests_closest(env):
    with pytest.raises(
        DatasetNotFoundError,
        match=r"unknown dataset 'azure-2023-convo' .* "
        r"did you mean azure-2023-conv",
    ):
        get_dataset("azure-2023-convo")
    with pytest.raises(DatasetNotFoundError, match="did you mean paper-23code-24conv"):
        load_series("paper-23code-24conf")
    with pytest.raises(DatasetNotFoundError, match="nothere.csv does not exist"):
        resolve("nothere.csv")


def test_registry_entries_and_checksums_of_the_shared_data(data_dir):
    expected = {
        "azure-2023-conv", "azure-2023-code", "azure-2024-code-5s", "azure-2024-conv-5s",
        "azure-2024-code-week", "azure-2024-conv-week", "paper-2023-conv", "paper-2023-code",
        "paper-23code-24code", "paper-23code-24conv", "paper-24code-24conv",
    }  # fmt: skip
    assert set(DATASETS) == expected
    for dataset in DATASETS.values():
        assert not dataset.path.startswith("/")
        if dataset.name.endswith("-week"):
            assert dataset.url and dataset.url.startswith("https://")
            continue
        assert sha256_file(data_dir / dataset.path) == dataset.sha256, dataset.name


def test_named_datasets_load_with_their_names(data_dir):
    conv = load_series("azure-2023-conv", data_dir)
    assert conv.name == "azure-2023-conv" and len(conv) == 701
    paper = load_series("paper-2023-conv", data_dir)
    np.testing.assert_array_equal(paper.values[701:1402], conv.values)  # tiled copy
    generated = load_series("paper-2023-conv", data_dir, tokens="generated")
    assert generated.values[0] == 44.0
