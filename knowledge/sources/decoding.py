"""Turning source bytes into text, and small naming helpers shared by the parsers.

Encoding policy: UTF-8 (a leading byte-order mark is dropped), or UTF-16 when the file
starts with a UTF-16 byte-order mark. Anything else is refused with the byte offset of
the first undecodable byte; there is deliberately no guessing fallback (cp1252 and
latin-1 decode *any* bytes, so a wrong guess would silently index mojibake).
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from knowledge.errors import SourceError

_BINARY_MAGIC: dict[bytes, str] = {
    b"%PDF-": "a PDF",
    b"PK\x03\x04": "a ZIP/Office document",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"\xff\xd8\xff": "a JPEG image",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "an executable",
}
_SNIFF_BYTES = 8192


def check_not_empty(data: bytes) -> None:
    """Raise SourceError when the source has no bytes or only whitespace."""
    if not data.strip():
        raise SourceError("file is empty; add content or remove it from the knowledge folder")


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (BOM allowed) or BOM-marked UTF-16 text; refuse binary and other encodings."""
    check_not_empty(data)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SourceError(f"invalid UTF-16 text at byte {exc.start}; re-save the file as UTF-8") from exc
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise SourceError(f"binary file ({what}) posing as text; give it the right extension or remove it")
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise SourceError("binary file posing as text (it contains NUL bytes); remove it or export it as text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"not UTF-8 text: undecodable byte 0x{data[exc.start]:02x} at byte offset {exc.start}; "
            "re-save the file as UTF-8"
        ) from exc
    if not text.strip():
        raise SourceError("file is empty; add content or remove it from the knowledge folder")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def stem_of(name: str) -> str:
    """The last path segment of a source name (file name or URL path) without its suffix."""
    path = urlsplit(name).path if "://" in name else name
    stem = PurePosixPath(path.rstrip("/")).stem
    return stem or urlsplit(name).netloc or name


def humanise(stem: str) -> str:
    """Turn a file stem such as ``reset-password_v2`` into a title: ``Reset password v2``."""
    words = re.sub(r"[-_.]+", " ", stem).strip()
    return (words[:1].upper() + words[1:]) if words else stem


def suffix_of(name: str) -> str:
    """The lower-cased suffix of a file name or of a URL's path (``""`` when none)."""
    path = urlsplit(name).path if "://" in name else name
    return PurePosixPath(path).suffix.lower()


def squash(text: str) -> str:
    """Collapse runs of whitespace into single spaces and trim."""
    return " ".join(text.split())
