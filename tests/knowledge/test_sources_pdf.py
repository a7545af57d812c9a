"""PDF sources: text layer per page, and the ways a PDF can be unusable."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from knowledge.errors import SourceError
from knowledge.sources import parse
from knowledge.types import RawSource, SourceRef


def _raw(data: bytes, name: str = "manual.pdf") -> RawSource:
    return RawSource(ref=SourceRef(name=name, location=f"/kb/{name}"), data=data, fingerprint="f")


def test_pdf_text_layer_is_extracted_per_page_with_metadata_title(make_pdf: Callable[..., bytes]) -> None:
    data = make_pdf([["Warranty terms", "Two years on all devices."], ["Page two: returns within 30 days."]],
                    title="Acme Warranty")
    docs = parse(_raw(data))
    assert [doc.metadata["page"] for doc in docs] == [1, 2]
    assert all(doc.title == "Acme Warranty" and doc.format == "text" for doc in docs)
    assert "Two years on all devices." in docs[0].text and "returns within 30 days" in docs[1].text
    assert all(doc.source == doc.origin == "manual.pdf" for doc in docs)


def test_pdf_title_falls_back_to_the_first_line(make_pdf: Callable[..., bytes]) -> None:
    [doc] = parse(_raw(make_pdf([["", "Setup guide", "Plug it in."]])))
    assert doc.title == "Setup guide"


def test_blank_pages_are_skipped(make_pdf: Callable[..., bytes]) -> None:
    docs = parse(_raw(make_pdf([["First"], [], ["Third"]])))
    assert [doc.metadata["page"] for doc in docs] == [1, 3]


def test_corrupt_pdf_is_refused() -> None:
    garbage = b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF"
    with pytest.raises(SourceError, match="corrupt PDF"):
        parse(_raw(garbage))


def test_truncated_pdf_is_refused(make_pdf: Callable[..., bytes]) -> None:
    data = make_pdf([["Some text here"]])
    with pytest.raises(SourceError, match=r"corrupt PDF|no text layer"):
        parse(_raw(data[: len(data) // 3]))


def test_pdf_suffix_on_a_non_pdf_is_refused() -> None:
    with pytest.raises(SourceError, match="not a PDF"):
        parse(_raw(b"<html>oops</html>"))


def test_password_encrypted_pdf_is_refused(make_pdf: Callable[..., bytes]) -> None:
    data = make_pdf([["Secret plans"]], encrypt="secret")
    with pytest.raises(SourceError, match="PDF is encrypted with a password; save an unencrypted copy"):
        parse(_raw(data))


def test_pdf_encrypted_with_an_empty_user_password_opens(make_pdf: Callable[..., bytes]) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Readable anyway"]]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    [doc] = parse(_raw(buffer.getvalue()))
    assert "Readable anyway" in doc.text


def test_pdf_without_a_text_layer_is_refused(image_only_pdf: bytes) -> None:
    with pytest.raises(SourceError, match=r"PDF has no text layer \(scanned images\?\); run OCR"):
        parse(_raw(image_only_pdf))
