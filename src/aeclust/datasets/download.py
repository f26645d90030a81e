"""Downloading with sha256 verification, safe archive extraction and atomic writes.

Every function here writes to a temporary file in the destination folder first and moves it into
place with :func:`os.replace`, so an interrupted download or conversion never leaves a partial file
under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

USER_AGENT = "aeclust-datasets/0.1 (+https://pypi.org/project/aeclust)"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A data set could not be downloaded or converted."""


class ChecksumError(DownloadError):
    """A downloaded file (or its converted content) did not have the expected sha256."""


class UnsafeArchiveError(DownloadError, ValueError):
    """An archive member would be written outside the extraction folder."""


@dataclass(frozen=True)
class RemoteFile:
    """One raw file of a data set's canonical source.

    Parameters
    ----------
    key : str
        Name under which the converter receives the local path.
    filename : str
        Local file name in the download folder.
    urls : tuple of str
        The canonical URL first, then mirrors; a mirror is tried only when the previous URL fails.
    sha256 : str or None
        Published sha256 of the file, or None when none is known for certain (the data set's
        converted content is then verified instead).
    """

    key: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file.

    Parameters
    ----------
    path : path-like
        File to hash.

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def content_sha256(*arrays: np.ndarray) -> str:
    """Return the sha256 of the bytes of ``arrays``, each taken as a C-contiguous array, in order.

    Parameters
    ----------
    *arrays : numpy.ndarray
        Arrays to hash (for a data set: ``x`` as stored, uint8, then ``y``, int64).

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    h = hashlib.sha256()
    for a in arrays:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


@contextlib.contextmanager
def _temp_path(folder: Path, prefix: str, suffix: str) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield an open temporary file in ``folder``; it is deleted unless the caller moved it."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _urlopen(url: str, timeout: float) -> BinaryIO:
    """Open a URL for reading (monkeypatched in tests)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def fetch_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    what: str = "file",
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its sha256.

    The data is streamed to a temporary file next to ``dest`` and moved into place with
    :func:`os.replace` only once it is complete and (when ``sha256`` is given) verified.

    Parameters
    ----------
    url : str
        Any URL :func:`urllib.request.urlopen` handles (``https://``, ``http://``, ``file://``).
    dest : path-like
        Final path of the file. Its folder must exist.
    sha256 : str or None, default=None
        Expected hex sha256; on mismatch nothing is written and :class:`ChecksumError` is raised.
    timeout : float, default=60.0
        Socket timeout in seconds.
    what : str, default="file"
        Description used in error messages (e.g. ``"mnist file train-images-idx3-ubyte.gz"``).

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DownloadError
        If the URL cannot be read (network, HTTP error, missing file).
    ChecksumError
        If the content does not have the expected sha256 (the bad file is deleted).
    """
    dest = Path(dest)
    h = hashlib.sha256()
    n_bytes = 0
    with _temp_path(dest.parent, prefix=f".{dest.name}.", suffix=".part") as (fh, tmp):
        try:
            with _urlopen(url, timeout) as response:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    h.update(block)
                    n_bytes += len(block)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason: object = exc  # "HTTP Error 404: Not Found"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"could not download {what} from {url}: {reason}") from exc
        fh.close()
        got = h.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise ChecksumError(
                f"checksum mismatch for {what} downloaded from {url}: expected sha256 {sha256}, "
                f"got {got} ({n_bytes} bytes); the bad file was deleted"
            )
        os.replace(tmp, dest)
    logger.info("downloaded %s from %s (%d bytes, sha256 %s)", what, url, n_bytes, got)
    return dest


def download_file(remote: RemoteFile, folder: Path, *, dataset: str, timeout: float = 60.0) -> Path:
    """Fetch one raw file of a data set, trying its mirrors in order.

    A file already in ``folder`` is reused when its sha256 matches ``remote.sha256``; a file
    without a known sha256 is always downloaded again.

    Parameters
    ----------
    remote : RemoteFile
        The file, its URLs and (optionally) sha256.
    folder : pathlib.Path
        Download folder (created when missing).
    dataset : str
        Data set name, for messages.
    timeout : float, default=60.0
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        Local path of the verified file.

    Raises
    ------
    DownloadError
        If every URL failed; the message lists each URL with its failure.
    ChecksumError
        If at least one URL served content with the wrong sha256 and none served the right one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / remote.filename
    what = f"{dataset} file {remote.filename}"
    if dest.exists():
        if remote.sha256 is not None and sha256_file(dest) == remote.sha256:
            logger.info("using cached %s (%s)", what, dest)
            return dest
        dest.unlink()
    failures: list[DownloadError] = []
    for url in remote.urls:
        try:
            return fetch_url(url, dest, sha256=remote.sha256, timeout=timeout, what=what)
        except DownloadError as exc:
            logger.warning("%s", exc)
            failures.append(exc)
    checksum = [f for f in failures if isinstance(f, ChecksumError)]
    if checksum:
        raise ChecksumError("; ".join(str(f) for f in checksum)) from checksum[0]
    if len(failures) == 1:
        raise failures[0]
    raise DownloadError("; ".join(str(f) for f in failures)) from failures[-1]


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    if norm.startswith("/") or _DRIVE.match(norm) or ".." in parts:
        raise UnsafeArchiveError(
            f"refusing to extract {archive.name}: member {name!r} would be written outside the "
            "extraction folder (absolute path or '..')"
        )
    return PurePosixPath(norm)


def safe_extract_zip(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract a zip archive, refusing any member that could escape ``dest``.

    Every member name is checked before anything is written: absolute paths, drive letters,
    ``..`` components and symbolic links are rejected.

    Parameters
    ----------
    archive : path-like
        The zip file.
    dest : path-like
        Folder to extract into (created when missing).

    Returns
    -------
    list of pathlib.Path
        Paths of the extracted regular files.

    Raises
    ------
    UnsafeArchiveError
        If a member is unsafe (nothing is extracted then).
    DownloadError
        If the file is not a valid zip archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip archive: {exc}") from exc
    with zf:
        members = zf.infolist()
        for info in members:
            rel = _check_member_name(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive.name}: member {info.filename!r} is a symlink"
                )
            target = (root / rel).resolve()
            if target != root and root not in target.parents:
                raise UnsafeArchiveError(
                    f"refusing to extract {archive.name}: member {info.filename!r} resolves "
                    f"outside {root}"
                )
        out: list[Path] = []
        for info in members:
            target = root / _check_member_name(info.filename, archive)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                for block in iter(lambda src=src: src.read(CHUNK), b""):
                    dst.write(block)
            out.append(target)
    return out


def atomic_savez(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write arrays with :func:`numpy.savez_compressed` to a temp file, then move it into place.

    Parameters
    ----------
    path : path-like
        Final path (should end in ``.npz``). Its folder must exist.
    **arrays : numpy.ndarray
        The arrays to store.

    Returns
    -------
    pathlib.Path
        ``path``. If writing fails, ``path`` is untouched and no temporary file is left behind.
    """
    path = Path(path)
    with _temp_path(path.parent, prefix=f".{path.name}.", suffix=".part") as (fh, tmp):
        np.savez_compressed(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    return path
