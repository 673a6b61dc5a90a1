"""Listing the media files of a folder so that nothing in it goes missing without a record.

``Path.rglob`` (Python 3.11) drops, without a word, exactly the entries a batch must report: a symbolic link whose
target is gone or loops (``is_file()`` is false), a sub-folder it may not read (``PermissionError`` is swallowed),
and every symlinked sub-folder (never followed). :func:`media_files` lists the first two, so that the scan or
``prepare`` records them (``missing``, ``unreadable``), and follows symlinked folders once each (a loop ends at a
folder already walked).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Collection
from pathlib import Path

from dflab.errors import MediaError


def media_files(folder: str | Path, suffixes: Collection[str]) -> list[Path]:
    """The files under ``folder`` (recursively) whose lower-case suffix is in ``suffixes``, sorted.

    Also listed, so the caller records them instead of losing them: a symbolic link with such a suffix whose target
    is missing or loops, and a folder that cannot be read (the folder itself). Symlinked folders are walked, each
    real folder once, except a link to the folder itself or to one above it (a loop).
    """
    found: list[Path] = []
    walked: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        if exc.filename is not None:
            found.append(Path(exc.filename))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in walked:  # reached again through a symlink (two ways into one folder)
            dirnames[:] = []
            continue
        walked.add((st.st_dev, st.st_ino))
        # a link to this folder or to one above it is a loop: never followed (it would climb out of the folder given)
        here = os.path.realpath(dirpath) + os.sep
        dirnames[:] = sorted(
            d for d in dirnames if not here.startswith(os.path.realpath(os.path.join(dirpath, d)) + os.sep)
        )
        for name in filenames:
            p = Path(dirpath, name)
            # a FIFO or socket is neither a file nor a broken link: never opened (reading a FIFO would block)
            if p.suffix.lower() in suffixes and (p.is_file() or (p.is_symlink() and not p.exists())):
                found.append(p)
    return sorted(found)


def missing_error(path: str | Path) -> MediaError:
    """The ``missing`` error for a path that does not exist, saying why when it is a symbolic link."""
    path = Path(path)
    if not path.is_symlink():
        return MediaError(path, "missing", "no such file")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return MediaError(path, "missing", "symbolic link loop")
    return MediaError(path, "missing", f"broken symbolic link to {os.readlink(path)}")


def unreadable_error(path: str | Path, exc: OSError) -> MediaError:
    """The ``unreadable`` error (no permission to read the file or list the folder)."""
    return MediaError(path, "unreadable", exc.strerror or type(exc).__name__)
