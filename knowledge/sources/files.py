"""Source files in the knowledge folder: finding them and reading them within the size limit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from pathlib import Path

from knowledge.errors import SourceError
from knowledge.types import RawSource, SourceRef

_MB = 1024 * 1024


def _size(size: int) -> str:
    return f"{size / _MB:.1f} MB" if size >= _MB / 10 else f"{size / 1024:.1f} KB"


def too_large(size: int, limit_mb: float, what: str = "file") -> SourceError:
    """The error for a source over ``knowledge.max_file_mb``."""
    return SourceError(
        f"{what} is {_size(size)}, over the {limit_mb:g} MB limit (knowledge.max_file_mb); "
        "split it or raise the limit"
    )


def walk_folder(folder: Path, suffixes: Collection[str]) -> list[SourceRef]:
    """Every non-hidden file under ``folder`` with a supported suffix, as SourceRefs."""
    refs: list[SourceRef] = []
    for directory, subdirs, filenames in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for filename in filenames:
            path = Path(directory, filename)
            if filename.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
                continue
            name = path.relative_to(folder).as_posix()
            refs.append(SourceRef(name=name, location=str(path.resolve()), kind="file"))
    return refs


def read_file(ref: SourceRef, max_file_mb: float) -> RawSource:
    """Read one file after checking its size with stat (a huge file is never loaded)."""
    path = Path(ref.location)
    try:
        size = path.stat().st_size
        if size > max_file_mb * _MB:
            raise too_large(size, max_file_mb)
        with path.open("rb") as handle:
            data = handle.read(int(max_file_mb * _MB) + 1)  # the file may have grown since stat
    except FileNotFoundError as exc:
        raise SourceError(f"file not found: {path}; it was moved or deleted") from exc
    except IsADirectoryError as exc:
        raise SourceError(f"{path} is a folder, not a file") from exc
    except PermissionError as exc:
        raise SourceError(f"permission denied reading {path}; make it readable by the bot's user") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > max_file_mb * _MB:
        raise too_large(len(data), max_file_mb)
    return RawSource(ref=ref, data=data, fingerprint=hashlib.sha256(data).hexdigest(), content_type=None)
