"""Fetch the public originals of the benchmark datasets into the data directory.

Only MovieLens 100K can be downloaded automatically (a public zip from GroupLens). The Amazon sets
are preprocessed releases of the Amazon Review Data 2018 and must be placed by hand.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from dataio.dataset import KNOWN_DATASETS, DatasetError

logger = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

_MANUAL_SOURCES = {
    "amazon-scientific": (
        "Amazon 'Industrial & Scientific' from the Amazon Review Data 2018 release (McAuley lab, "
        "https://nijianmo.github.io/amazon/), as preprocessed by UniSRec "
        "(https://github.com/RUCAIBox/UniSRec): Scientific.test.inter, Scientific.text and "
        "Scientific.item2index"
    ),
    "amazon-games": (
        "Amazon 'Video Games' from the Amazon Review Data 2018 release (McAuley lab, "
        "https://nijianmo.github.io/amazon/), as preprocessed by LLMRank "
        "(https://github.com/RUCAIBox/LLMRank): Games.test.inter and Games.item"
    ),
}


class DownloadError(DatasetError):
    """A dataset download failed: says what could not be reached and how to get the data by hand."""


def download_dataset(
    name: str, data_dir: Path, *, url: str | None = None, timeout: float = 30
) -> Path:
    """Download ``name`` into ``data_dir/<name>`` and return that folder.

    Only ``ml-100k`` downloads automatically; an existing copy (``u.data`` present) is kept.
    """
    data_dir = Path(data_dir)
    if name in _MANUAL_SOURCES:
        raise DatasetError(
            f"{name} cannot be downloaded automatically. It is {_MANUAL_SOURCES[name]}. "
            f"Place those files in {data_dir / name}/ by hand."
        )
    if name != "ml-100k":
        raise DatasetError(
            f"unknown dataset {name!r}; known datasets are {', '.join(KNOWN_DATASETS)} "
            "(only ml-100k downloads automatically)"
        )
    target = data_dir / name
    if (target / "u.data").is_file():
        logger.info("%s already present in %s; not downloading", name, target)
        return target
    source = url or ML100K_URL
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as scratch:
        archive = Path(scratch) / f"{name}.zip"
        _fetch(source, archive, target, timeout)
        unpacked = Path(scratch) / "unpacked"
        _unzip(archive, unpacked, source, target)
        folder = _data_folder(unpacked, source, target)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(folder), str(target))
    logger.info("downloaded %s from %s into %s", name, source, target)
    return target


def _fetch(url: str, destination: Path, target: Path, timeout: float) -> None:
    """Stream ``url`` into ``destination``; any network or HTTP failure is a ``DownloadError``."""
    host = urlsplit(url).netloc or url
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            with destination.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    except httpx.HTTPStatusError as exc:
        reason = f"HTTP {exc.response.status_code}"
        raise DownloadError(_by_hand(f"{host} answered {reason}", url, target)) from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise DownloadError(_by_hand(f"could not reach {host}: {reason}", url, target)) from exc


def _unzip(archive: Path, destination: Path, url: str, target: Path) -> None:
    """Extract ``archive``, refusing members that would land outside ``destination``."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                parts = PurePosixPath(member).parts
                if member.startswith("/") or ".." in parts:
                    raise DownloadError(
                        _by_hand(f"the archive has an unsafe path {member!r}", url, target)
                    )
            bundle.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise DownloadError(
            _by_hand(f"the download is not a zip file ({exc})", url, target)
        ) from exc


def _data_folder(unpacked: Path, url: str, target: Path) -> Path:
    """The extracted folder holding ``u.data`` (the zip's top folder, or the root itself)."""
    for candidate in (unpacked, *sorted(p for p in unpacked.iterdir() if p.is_dir())):
        if (candidate / "u.data").is_file():
            return candidate
    raise DownloadError(_by_hand("the archive does not contain u.data", url, target))


def _by_hand(problem: str, url: str, target: Path) -> str:
    return (
        f"{problem}; download it by hand from {url} and unzip into {target.parent} "
        f"(so that {target / 'u.data'} exists)"
    )
