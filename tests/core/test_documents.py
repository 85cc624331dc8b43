"""Document sniffing and inspection: kind from the bytes, limits from the headers, hostile files
refused with a reason a client can act on, pages decoded one at a time."""

from __future__ import annotations

import io
import re
import threading

import pytest
from PIL import Image

from offload_core.documents.formats import DocumentKind, DocumentRejected, inspect, iter_pages, sniff
from tests.support import documents as docs

LIMITS = {"max_pages": 200, "max_pixels": 60_000_000, "dpi": 300}


@pytest.mark.parametrize(("make", "kind", "pages"), [
    (lambda: docs.png_document().data, DocumentKind.PNG, 1),
    (lambda: docs.jpeg_document().data, DocumentKind.JPEG, 1),
    (lambda: docs.tiff_document(3).data, DocumentKind.TIFF, 3),
    (lambda: docs.pdf_document(3).data, DocumentKind.PDF, 3),
], ids=["png", "jpeg", "tiff", "pdf"])
def test_good_documents_are_sniffed_counted_and_measured(make, kind, pages):
    info = inspect(make(), **LIMITS)
    assert (info.kind, info.pages) == (kind, pages)
    # A4 at 300 dpi; a PDF page of 595.28 pt rounds up by one pixel when rendered.
    assert all(abs(w - 2480) <= 1 and abs(h - 3508) <= 1 for w, h in info.page_sizes)


def test_the_kind_comes_from_the_bytes_and_a_pdf_header_may_follow_some_junk():
    assert sniff(docs.small_png()) is DocumentKind.PNG
    pdf = docs.blank_pages_pdf(1)
    assert sniff(b"\x00" * 1000 + pdf) is DocumentKind.PDF  # readers look in the first 1024 bytes
    with pytest.raises(DocumentRejected) as refused:
        sniff(b"\x00" * 1100 + pdf)
    assert refused.value.unsupported_type
    with pytest.raises(DocumentRejected) as refused:
        sniff(b"%!PS-Adobe-3.0 not a pdf")
    assert refused.value.unsupported_type
    assert "not a png, jpeg, tiff or pdf" in refused.value.message.lower()


HOSTILE = {
    "empty": (lambda: b"", "the file is empty"),
    "gif": (lambda: b"GIF89a" + b"\0" * 100, "not a PNG, JPEG, TIFF or PDF"),
    "bigtiff": (lambda: b"II+\x00" + b"\0" * 100, "BigTIFF files are not supported"),
    "pdf-corrupt": (docs.corrupt_pdf, "the PDF is damaged or truncated"),
    "pdf-truncated": (docs.truncated_pdf, "the PDF is truncated"),
    "pdf-encrypted": (docs.encrypted_pdf, "the PDF is encrypted; remove the password"),
    "pdf-10000-pages": (docs.many_pages_pdf, "the PDF has 10000 pages; the limit is 200"),
    "pdf-huge-page": (docs.huge_page_pdf, "page 1 is 60001x60001 pixels at 300 dpi (3600 MP); the limit is 60 MP"),
    "png-bomb": (docs.bomb_png, "page 1 is 100000x100000 pixels (10000 MP); the limit is 60 MP"),
    "png-too-wide": (lambda: docs.bomb_png(40_000, 100), "up to 32767 pixels on a side"),
    "png-truncated": (docs.truncated_png, "the PNG is damaged or truncated"),
    "png-then-zip": (docs.png_with_zip_appended, "bytes of other data after the image ends"),
    "png-then-pdf": (docs.png_header_then_pdf, "both a PNG image and a PDF document"),
    "jpeg-truncated": (docs.truncated_jpeg, "the JPEG is damaged or truncated"),
    "tiff-loop": (docs.tiff_with_ifd_loop, "loops back on itself after page 3"),
    "tiff-5000-pages": (docs.tiff_with_many_pages, "the TIFF has more than 200 pages; the limit is 200"),
    "tiff-huge-page-2": (docs.tiff_with_huge_second_page, "page 2 is 100000x100000 pixels"),
    "tiff-truncated": (docs.truncated_tiff, "the TIFF is damaged or truncated"),
}


@pytest.mark.parametrize(("make", "words"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_documents_are_refused_with_a_reason_before_any_page_is_decoded(make, words):
    data = make()
    with pytest.raises(DocumentRejected) as refused:
        inspect(data, **LIMITS)
    assert words in refused.value.message
    assert refused.value.retryable is False
    assert refused.value.unsupported_type == (words.startswith(("not a", "BigTIFF")))
    with pytest.raises(DocumentRejected, match=re.escape(refused.value.message)):
        next(iter_pages(data, **LIMITS))



GOOD = {"png": lambda: docs.png_document().data, "jpeg": lambda: docs.jpeg_document().data,
        "tiff": lambda: docs.tiff_document(3).data, "pdf": lambda: docs.pdf_document(3).data}


@pytest.mark.parametrize("make", [*GOOD.values(), *(make for make, _ in HOSTILE.values())],
                         ids=[*GOOD.keys(), *HOSTILE.keys()])
def test_a_file_is_judged_as_its_bytes_are_whether_given_as_bytes_a_path_or_a_file_object(make, tmp_path):
    """The gateway inspects its spooled upload in place; the verdict must not depend on how."""
    data = make()
    path = tmp_path / "upload"
    path.write_bytes(data)

    def verdict(source):
        try:
            return inspect(source, **LIMITS)
        except DocumentRejected as exc:
            return ("refused", exc.message, exc.unsupported_type)

    expected = verdict(data)
    with path.open("rb") as file:
        file.read(7)  # a file object is read from its start, wherever it was left
        assert verdict(file) == expected
        assert not file.closed  # and stays the caller's to close
    assert verdict(path) == expected
    assert verdict(str(path)) == expected
    assert verdict(io.BytesIO(data)) == expected

def test_the_limits_are_the_callers():
    png = docs.png_document().data
    with pytest.raises(DocumentRejected, match=r"page 1 is 2480x3508 pixels \(8.7 MP\); the limit is 5.0 MP"):
        inspect(png, max_pages=1, max_pixels=5_000_000, dpi=300)
    tiff = docs.tiff_document(3).data
    with pytest.raises(DocumentRejected, match="more than 2 pages; the limit is 2"):
        inspect(tiff, max_pages=2, max_pixels=60_000_000, dpi=300)
    assert inspect(docs.tiff_with_many_pages(300), max_pages=300, max_pixels=100, dpi=300).pages == 300


def test_pdf_pages_are_measured_and_rendered_at_the_requested_resolution():
    pdf = docs.pdf_document(2).data
    info = inspect(pdf, max_pages=10, max_pixels=60_000_000, dpi=150)
    pages = [(p.mode, p.size, p.info["dpi"]) for p in iter_pages(pdf, max_pages=10, max_pixels=60_000_000, dpi=150)]
    assert pages == [("L", size, (150, 150)) for size in info.page_sizes]
    assert info.page_sizes[0] == (1241, 1754)


@pytest.mark.parametrize("make", [lambda: docs.tiff_document(3).data, lambda: docs.pdf_document(3).data],
                         ids=["tiff", "pdf"])
def test_pages_come_one_at_a_time_and_each_is_closed_when_the_next_is_asked_for(make):
    pages = iter_pages(make(), **LIMITS)
    first = next(pages)
    assert first.mode == "L" and first.getextrema() == (0, 255)  # black text on white paper
    second = next(pages)
    with pytest.raises(ValueError, match="closed"):
        first.getpixel((0, 0))
    assert second.getpixel((5, 5)) == 255
    pages.close()
    with pytest.raises(ValueError, match="closed"):
        second.getpixel((0, 0))


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def test_transparent_and_16_bit_images_become_black_text_on_white_paper():
    text = docs.page_image(1).crop((0, 0, 1200, 600))
    transparent = Image.new("RGBA", text.size, (0, 0, 0, 0))
    transparent.putalpha(text.point(lambda v: 255 - v))  # black ink only where the text is
    sixteen_bit = text.convert("I").point(lambda v: v * 257).convert("I;16")
    for data in (_encoded(transparent, "PNG"), _encoded(sixteen_bit, "PNG")):
        pages = iter_pages(data, **LIMITS)  # kept: dropping the iterator closes its page
        page = next(pages)
        assert page.mode == "L"
        assert page.getpixel((0, 0)) == 255
        assert page.getextrema()[0] < 30


def test_a_photo_is_turned_upright_as_its_exif_orientation_says():
    landscape = docs.page_image(1).crop((0, 0, 600, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    data = _encoded(landscape, "JPEG", exif=exif)
    assert inspect(data, **LIMITS).page_sizes == ((600, 400),)  # as stored
    pages = iter_pages(data, **LIMITS)
    assert next(pages).size == (400, 600)


def test_pdfs_can_be_inspected_from_many_threads_at_once():
    # PDFium is not thread-safe; the gateway inspects uploads in a thread pool.
    pdf = docs.pdf_document(3).data
    expected = inspect(pdf, **LIMITS)
    results: list[object] = []

    def work() -> None:
        for _ in range(15):
            try:
                results.append(inspect(pdf, **LIMITS))
                results.append(inspect(docs.many_pages_pdf(), **LIMITS))
            except DocumentRejected as exc:
                results.append(exc.message)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(expected) == 60
    assert results.count("the PDF has 10000 pages; the limit is 200: split it into smaller documents") == 60
