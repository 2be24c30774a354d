"""Named datasets: where each file lives, its checksum, where to download it, how to read it.

A name resolves to a local file in this order: the data directory (``data_dir`` argument,
else the ``DRDFL_DATA_DIR`` environment variable), then the user cache (``DRDFL_CACHE_DIR``,
else ``$XDG_CACHE_HOME/drdfl``, else ``~/.cache/drdfl``), then a download into the cache
through pooch (progress bar, sha256 check, nothing left behind on failure).
``DRDFL_OFFLINE=1`` makes a needed download fail at once with a message that says which
file to place where.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from tqdm.auto import tqdm

from drdfl._io import default_file_mode
from drdfl.errors import DataError, DatasetNotFoundError

_AZURE_2023_URL: Final = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data"
# The container name is misspelt in Microsoft's own URL.
_AZURE_2024_URL: Final = (
    "https://azurepublicdatasettraces.blob.core.windows.net/azurellminfererencetrace"
)
_PAPER_DIR: Final = "paper-3dl"
_CHUNK_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class Dataset:
    """A named trace or series file: ``path`` is relative to the data directory."""

    name: str
    path: str
    format: str
    description: str
    sha256: str | None = None
    url: str | None = None

    @property
    def filename(self) -> str:
        return Path(self.path).name


def _paper(name: str, file: str, sha256: str, what: str) -> Dataset:
    return Dataset(
        name,
        f"{_PAPER_DIR}/{file}",
        "binned",
        f"3D-Learning paper file: {what}",
        sha256,
    )


_ALL: Final = (
    Dataset(
        "azure-2023-conv",
        "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
        "azure",
        "Azure LLM inference 2023, conversation: 19,366 requests over ~1 h",
        "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
        f"{_AZURE_2023_URL}/AzureLLMInferenceTrace_conv.csv",
    ),
    Dataset(
        "azure-2023-code",
        "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
        "azure",
        "Azure LLM inference 2023, coding: 8,819 requests over ~1 h",
        "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
        f"{_AZURE_2023_URL}/AzureLLMInferenceTrace_code.csv",
    ),
    Dataset(
        "azure-2024-code-5s",
        "azure-llm-2024-5s/code_5s.csv",
        "binned",
        "Azure LLM inference 2024, coding: context tokens per 5 s, ~3.5 days",
        "a49afbc45e02657ac781a8ad0ae09686de2db99e0ecbc9cb55816168c3518869",
    ),
    Dataset(
        "azure-2024-conv-5s",
        "azure-llm-2024-5s/conv_5s.csv",
        "binned",
        "Azure LLM inference 2024, conversation: context tokens per 5 s, 3.5 days",
        "47df5c3b4347609098852ae46690607b241d9234936c229c14c32e37ca39c40d",
    ),
    # No checksum is published for the week-long traces and none could be taken here.
    Dataset(
        "azure-2024-code-week",
        "azure-llm-2024/AzureLLMInferenceTrace_code_1week.csv",
        "azure",
        "Azure LLM inference 2024, coding: 16.8 M requests, one week (~0.7 GB)",
        None,
        f"{_AZURE_2024_URL}/AzureLLMInferenceTrace_code_1week.csv",
    ),
    Dataset(
        "azure-2024-conv-week",
        "azure-llm-2024/AzureLLMInferenceTrace_conv_1week.csv",
        "azure",
        "Azure LLM inference 2024, conversation: 27.3 M requests, one week (~1.1 GB)",
        None,
        f"{_AZURE_2024_URL}/AzureLLMInferenceTrace_conv_1week.csv",
    ),
    _paper(
        "paper-2023-conv",
        "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv",
        "be75aa4257479fa2462524dde4bf42b054b775171630c176e76b998f7cc7008c",
        "2023 conversation at 5 s (701 bins) tiled 30 times",
    ),
    _paper(
        "paper-2023-code",
        "AzureLLMInferenceTrace_2023_Coding_compressed-5s.csv",
        "76edd4ef615d650ea8b3dc519727e077ef5cc1ff9f92dca7d0bc5d9d6d225bae",
        "233 non-empty 5 s bins of 2023 coding tiled 96 times",
    ),
    _paper(
        "paper-23code-24code",
        "Combined_AzureLLMInferenceTrace_2023_Coding_2024_Coding_compressed-5s.csv",
        "c7cc714c22f946a8687c29e4c3dcc26539146e0d5523411b517c8cd26ee9ae42",
        "2023 coding (tiled) then 2024 coding at 5 s",
    ),
    _paper(
        "paper-23code-24conv",
        "Combined_AzureLLMInferenceTrace_2023_Coding_2024_Conversation_compressed-5s.csv",
        "f3201fd80cb5cd9088d015265fe42d3c23082e91e6c9457974dfd48ff786c273",
        "2023 coding (tiled) then 2024 conversation at 5 s",
    ),
    _paper(
        "paper-24code-24conv",
        "Combined_AzureLLMInferenceTrace_2024_Coding_2024_Conversation_compressed-5s.csv",
        "46c3a73377949d499d5a27d266f571f6ee8ed53d6e2d580340d088e4964e7c38",
        "2024 coding then 2024 conversation at 5 s",
    ),
)

DATASETS: Final[Mapping[str, Dataset]] = MappingProxyType({d.name: d for d in _ALL})


def get_dataset(name: str) -> Dataset:
    """The registered dataset called ``name``; an unknown name suggests the closest ones."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, list(DATASETS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `drdfl data list`"
    raise DatasetNotFoundError(f"unknown dataset {name!r} and no such file; {hint}")


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory: ``explicit`` if given, else ``DRDFL_DATA_DIR``, else none. One
    that exists but is not a directory is an error (not a missing dataset)."""
    configured = os.environ.get("DRDFL_DATA_DIR")
    if explicit is not None:
        path, what = Path(explicit), "data directory (--data-dir or data.data_dir)"
    elif configured:
        path, what = Path(configured), "data directory (DRDFL_DATA_DIR)"
    else:
        return None
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a {what} of trace files")
    return path


def cache_dir() -> Path:
    """The user cache: ``DRDFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/drdfl``, else
    ``~/.cache/drdfl``."""
    if configured := os.environ.get("DRDFL_CACHE_DIR"):
        return Path(configured)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "drdfl"
    return Path.home() / ".cache" / "drdfl"


def find_local(
    dataset: Dataset, data_directory: str | os.PathLike[str] | None = None
) -> Path | None:
    """The dataset's file in the data directory, else in the cache, else None."""
    roots = [data_dir(data_directory), cache_dir()]
    for root in roots:
        if root is not None and (root / dataset.path).is_file():
            return root / dataset.path
    return None


def resolve(
    spec: str | os.PathLike[str],
    data_directory: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[Path, Dataset | None]:
    """The local file for an explicit path or a dataset name, and the dataset if named.

    An existing path wins; a name is looked up in the data directory, then the cache, and
    downloaded into the cache when ``download`` is true.
    """
    path = Path(spec)
    if path.exists():
        return path, None
    name = str(spec)
    if name not in DATASETS and (os.sep in name or "/" in name or path.suffix):
        raise DatasetNotFoundError(f"{path} does not exist")
    dataset = get_dataset(name)
    local = find_local(dataset, data_directory)
    if local is not None:
        return local, dataset
    if not download:
        raise DatasetNotFoundError(_placement_hint(dataset, data_directory, "is not available"))
    return fetch(dataset, data_directory), dataset


def fetch(
    dataset: Dataset,
    data_directory: str | os.PathLike[str] | None = None,
    timeout_s: float = 30.0,
) -> Path:
    """Download ``dataset`` into the cache and return its path there.

    pooch streams it to a temporary file, checks the sha256 and only then moves it into
    place; a failed, truncated or corrupt download leaves no file behind.
    """
    import pooch
    import requests

    if dataset.url is None:
        raise DatasetNotFoundError(
            _placement_hint(dataset, data_directory, "is not available and has no download URL")
        )
    if os.environ.get("DRDFL_OFFLINE", "") not in ("", "0"):
        raise DatasetNotFoundError(
            _placement_hint(dataset, data_directory, "is not available (DRDFL_OFFLINE is set)")
        )
    target = cache_dir() / dataset.path
    bar = _Progress(dataset.filename)
    downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK_BYTES, timeout=timeout_s)
    known_hash = None if dataset.sha256 is None else f"sha256:{dataset.sha256}"
    # Our own bar reports the download; pooch's "Downloading data from …" line would go to
    # the stream its handler captured when pooch was first imported.
    pooch_log = pooch.get_logger()
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    try:
        pooch.retrieve(
            dataset.url, known_hash, fname=target.name, path=target.parent, downloader=downloader
        )
    except requests.exceptions.ChunkedEncodingError as exc:
        raise DataError(
            f"download of {dataset.name} from {dataset.url} {_broken_off(exc)}; "
            "nothing was kept, try again"
        ) from exc
    except requests.exceptions.HTTPError as exc:
        reason = exc.response.reason if exc.response is not None else exc
        raise DatasetNotFoundError(
            _placement_hint(dataset, data_directory, f"cannot be downloaded ({reason})")
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise DatasetNotFoundError(
            _placement_hint(dataset, data_directory, f"cannot be downloaded ({exc})")
        ) from exc
    except ValueError as exc:  # pooch's hash check
        got = re.search(r"but got ([0-9a-f]+)", str(exc))
        raise DataError(
            f"checksum mismatch for {dataset.name} from {dataset.url}: expected sha256 "
            f"{dataset.sha256}, got {got.group(1) if got else 'another'}; the download was "
            "discarded"
        ) from exc
    finally:
        bar.close()
        pooch_log.setLevel(level)
    if dataset.sha256 is None:
        warnings.warn(
            f"no checksum is recorded for {dataset.name}; the download is not verified",
            stacklevel=2,
        )
    # pooch's temporary file is private (0600); a cached dataset is a file like any other.
    target.chmod(default_file_mode())
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


class _Progress:
    """The progress bar pooch drives (pooch tests its bar for truth, which a tqdm bar
    without a total refuses); hidden when stderr is not a terminal."""

    def __init__(self, desc: str) -> None:
        self._bar = tqdm(unit="B", unit_scale=True, desc=desc, disable=None)

    @property
    def total(self) -> float | None:
        return self._bar.total

    @total.setter
    def total(self, value: float) -> None:
        self._bar.total = value or None
        self._bar.refresh()

    def update(self, n: float) -> None:
        self._bar.update(n)

    def reset(self) -> None:
        self._bar.reset(total=self._bar.total)

    def close(self) -> None:
        self._bar.close()


def _broken_off(exc: Exception) -> str:
    """What a broken-off transfer got: urllib3's IncompleteRead says how much was missing."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        partial, expected = getattr(cause, "partial", None), getattr(cause, "expected", None)
        if isinstance(partial, int) and isinstance(expected, int):
            return f"is truncated: {partial:,} of {partial + expected:,} bytes"
        cause = (
            cause.__cause__
            or cause.__context__
            or next((a for a in getattr(cause, "args", ()) if isinstance(a, BaseException)), None)
        )
    return f"broke off ({exc})"


def _placement_hint(
    dataset: Dataset, data_directory: str | os.PathLike[str] | None, problem: str
) -> str:
    where = data_dir(data_directory)
    place = (
        f"{where / dataset.path}"
        if where is not None
        else f"<data dir>/{dataset.path} (with --data-dir or DRDFL_DATA_DIR)"
    )
    source = f" from {dataset.url}" if dataset.url else ""
    return (
        f"dataset {dataset.name} {problem}; place {dataset.filename}{source} at {place} "
        f"or at {cache_dir() / dataset.path}"
    )
