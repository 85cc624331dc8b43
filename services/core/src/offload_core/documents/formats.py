"""What an uploaded document is, and whether it is safe to read: shared by the gateway and worker-ocr.

The gateway calls `sniff` and `inspect` to refuse a bad upload with a 4xx before it is queued;
worker-ocr calls them again (the payload store is not a trust boundary it controls) and then
reads the pages with `iter_pages`. `inspect` reads bytes, or a file (a path or a binary file
object: the gateway's spooled upload) without copying it into memory: the file is mapped
read-only, and Pillow and PDFium read from it.

- `sniff` looks at magic bytes only, never at the client's content type.
- `inspect` reads structure, never pixels: page count and page sizes come from the PNG, JPEG
  and TIFF headers (walked here, byte by byte, so a hostile header is judged before Pillow
  allocates anything) and from PDFium's page table. Hostile input costs little: page counting
  stops at `max_pages + 1`, loops in a TIFF's page list are caught, sizes are checked before
  any decoding.
- `iter_pages` decodes one page at a time and closes it when the caller moves on.

Every refusal is a `DocumentRejected`, a `PermanentJobError` whose message tells the client what
is wrong and what to do about it.

PDFium is not thread-safe, not even across documents (pypdfium2 docs): every PDFium call here
holds `_PDFIUM_LOCK`. The gateway inspects uploads in a thread pool, so this matters.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO, Union

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps

from offload_core.errors import PermanentJobError

# Tesseract refuses images wider or taller than this ("Failed to recognize"), whatever the
# pixel budget; refusing early gives the client a reason instead.
MAX_PAGE_SIDE = 32_767

# PDF readers accept the header anywhere in the first 1024 bytes, and the end marker anywhere
# in the last 1024 (PDF 32000-1 implementation notes); so do we.
_PDF_HEADER = b"%PDF-"
_PDF_EOF = b"%%EOF"
_PDF_WINDOW = 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_TIFF_LE, _TIFF_BE = b"II*\x00", b"MM\x00*"
_BIGTIFF = (b"II+\x00", b"MM\x00+")

# Structure walks stop here: real files come nowhere near, hostile ones would cost seconds.
_MAX_PNG_CHUNKS = 100_000
_MAX_JPEG_SEGMENTS = 10_000


class DocumentKind(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    PDF = "pdf"

    @property
    def label(self) -> str:
        return self.value.upper()


class DocumentRejected(PermanentJobError):
    """The upload cannot be read as a document within our limits; the message says why.

    `unsupported_type` is true when the file is not one of the accepted kinds at all (the
    gateway answers 415 then, 422 for every other refusal).
    """

    def __init__(self, message: str, *, unsupported_type: bool = False) -> None:
        super().__init__(message)
        self.unsupported_type = unsupported_type


@dataclass(frozen=True)
class DocumentInfo:
    kind: DocumentKind
    pages: int
    page_sizes: tuple[tuple[int, int], ...]  # (width, height) in pixels, per page; PDF: at the given dpi


_PDFIUM_LOCK = threading.RLock()  # re-entrant: a generator finaliser may close a PDF mid-call

# What `inspect` reads: the bytes, a path to the file, or a binary file object.
DocumentSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]


@dataclass(frozen=True)
class _Document:
    """One document, two views of it: `data` for the structure walks (the bytes, or the file
    mapped read-only, which supports the same indexing, slicing, `find` and `struct` reads), and
    `native` for Pillow and PDFium to open (the bytes, the path, or the file object)."""

    data: bytes | mmap.mmap
    native: bytes | str | BinaryIO

    def image_stream(self) -> BinaryIO:
        """A stream for Pillow, which closes what it is given when the image is closed."""
        if isinstance(self.native, bytes):
            return io.BytesIO(self.native)  # shares the bytes, copies nothing
        if isinstance(self.native, str):
            return open(self.native, "rb")
        return os.fdopen(os.dup(self.native.fileno()), "rb")  # the caller's file stays open


@contextmanager
def _mapped(file: BinaryIO) -> Iterator[bytes | mmap.mmap]:
    if os.fstat(file.fileno()).st_size == 0:
        yield b""  # an empty file cannot be mapped
        return
    view = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield view
    finally:
        view.close()


@contextmanager
def _document(source: DocumentSource) -> Iterator[_Document]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        yield _Document(data, data)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with open(path, "rb") as file, _mapped(file) as data:
            yield _Document(data, path)
    else:
        try:
            source.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # in memory (BytesIO): read it
            source.seek(0)
            data = source.read()
            yield _Document(data, data)
            return
        with _mapped(source) as data:
            yield _Document(data, source)


# --------------------------------------------------------------------------- sniffing


def sniff(data: bytes | mmap.mmap) -> DocumentKind:
    """The document's kind, from its first bytes; `DocumentRejected` if it is none we accept."""
    if not data:
        raise DocumentRejected("the file is empty; upload a PNG, JPEG, TIFF or PDF document")
    head = bytes(data[:_PDF_WINDOW])
    kind: DocumentKind | None = None
    if head.startswith(_PNG_SIGNATURE):
        kind = DocumentKind.PNG
    elif head.startswith(_JPEG_SOI):
        kind = DocumentKind.JPEG
    elif head.startswith((_TIFF_LE, _TIFF_BE)):
        kind = DocumentKind.TIFF
    elif head.startswith(_BIGTIFF):
        raise DocumentRejected(
            "BigTIFF files are not supported; save the image as a standard TIFF, PNG or PDF", unsupported_type=True
        )
    has_pdf_header = _PDF_HEADER in head
    if kind is not None and has_pdf_header:
        # A file two readers would each accept is a polyglot: what the gateway checked and
        # what some other reader sees could differ. Nobody scans one by accident.
        raise DocumentRejected(
            f"the file is both a {kind.label} image and a PDF document; upload a plain image or a plain PDF"
        )
    if kind is not None:
        return kind
    if has_pdf_header:
        return DocumentKind.PDF
    raise DocumentRejected(
        "the file is not a PNG, JPEG, TIFF or PDF document (judged by its content, not its name)",
        unsupported_type=True,
    )


# --------------------------------------------------------------------------- inspection


def inspect(source: DocumentSource, *, max_pages: int, max_pixels: int, dpi: int) -> DocumentInfo:
    """Kind, page count and page sizes, checked against the limits, without decoding pixels.

    `source` is the document's bytes, a path to it, or a binary file object (read from its
    start); a file is mapped, not copied into memory. Raises `DocumentRejected` for unknown,
    damaged, truncated, encrypted or ambiguous files, too many pages, or a page over
    `max_pixels` (PDF pages measured at `dpi`).
    """
    with _document(source) as doc:
        return _inspect(doc, max_pages=max_pages, max_pixels=max_pixels, dpi=dpi)


def _inspect(doc: _Document, *, max_pages: int, max_pixels: int, dpi: int) -> DocumentInfo:
    kind = sniff(doc.data)
    if kind is DocumentKind.PDF:
        sizes = _pdf_page_sizes(doc, max_pages=max_pages, dpi=dpi)
    else:
        sizes = _IMAGE_WALKERS[kind](doc.data, max_pages)
        _check_page_count(kind, len(sizes), max_pages)
    for number, (width, height) in enumerate(sizes, start=1):
        _check_page_size(kind, number, width, height, max_pixels=max_pixels, dpi=dpi)
    if kind is not DocumentKind.PDF:
        _confirm_pillow_reads(doc, kind, sizes, max_pixels)
    return DocumentInfo(kind=kind, pages=len(sizes), page_sizes=tuple(sizes))


def _check_page_count(kind: DocumentKind, pages: int, max_pages: int) -> None:
    if pages < 1:
        raise DocumentRejected(f"the {kind.label} has no pages")
    if pages > max_pages:
        # Counting stops at max_pages + 1, so "more than" is all we may claim.
        count = f"{pages}" if kind is DocumentKind.PDF else f"more than {max_pages}"
        raise DocumentRejected(
            f"the {kind.label} has {count} pages; the limit is {max_pages}: split it into smaller documents"
        )


def _megapixels(pixels: int) -> str:
    mp = pixels / 1_000_000
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.1f} MP"


def _check_page_size(
    kind: DocumentKind, number: int, width: int, height: int, *, max_pixels: int, dpi: int | None = None
) -> None:
    at_dpi = f" at {dpi} dpi" if kind is DocumentKind.PDF else ""
    if width < 1 or height < 1:
        raise DocumentRejected(f"page {number} has no area ({width}x{height} pixels); the {kind.label} is damaged")
    if width * height > max_pixels:
        fix = "use a smaller page size" if kind is DocumentKind.PDF else "scan at a lower resolution or split the page"
        raise DocumentRejected(
            f"page {number} is {width}x{height} pixels{at_dpi} ({_megapixels(width * height)}); "
            f"the limit is {_megapixels(max_pixels)}: {fix}"
        )
    if max(width, height) > MAX_PAGE_SIDE:
        raise DocumentRejected(
            f"page {number} is {width}x{height} pixels{at_dpi}; the OCR engine reads pages up to "
            f"{MAX_PAGE_SIDE} pixels on a side: split the page"
        )


def _damaged(kind: DocumentKind, detail: str) -> DocumentRejected:
    return DocumentRejected(f"the {kind.label} is damaged or truncated ({detail}); export or scan it again")


# --- PNG


def _png_sizes(data: bytes, max_pages: int) -> list[tuple[int, int]]:
    """Walk the chunks: IHDR first, IEND last, nothing after it. Pixels are not inflated."""
    kind = DocumentKind.PNG
    pos = len(_PNG_SIGNATURE)
    size: tuple[int, int] | None = None
    for index in range(_MAX_PNG_CHUNKS):
        if pos + 12 > len(data):
            raise _damaged(kind, "the file ends before the image does")
        length, chunk = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _damaged(kind, f"the file ends inside a {chunk.decode('latin-1')!r} chunk")
        if index == 0:
            if chunk != b"IHDR" or length != 13:
                raise _damaged(kind, "it does not start with an image header")
            size = struct.unpack_from(">II", data, pos + 8)
        if chunk == b"IEND":
            trailing = data[end:]
            if trailing.strip(b"\x00\r\n\t "):
                raise DocumentRejected(
                    f"the PNG has {len(trailing)} bytes of other data after the image ends, as files made "
                    "to be two formats at once do; save the image again and upload it"
                )
            assert size is not None
            return [size]
        pos = end
    raise _damaged(kind, f"more than {_MAX_PNG_CHUNKS} chunks")


# --- JPEG

_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # markers without a length field
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_sizes(data: bytes, max_pages: int) -> list[tuple[int, int]]:
    """Walk the marker segments to the first scan; require an end-of-image marker after it.

    Entropy-coded data escapes every 0xFF byte, so the EOI marker (FF D9) cannot occur inside
    it: a file without one after its first scan was cut short. Bytes after EOI (phone cameras
    append extra pictures there) are allowed.
    """
    kind = DocumentKind.JPEG
    pos = 2
    size: tuple[int, int] | None = None
    for _ in range(_MAX_JPEG_SEGMENTS):
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > len(data):
            raise _damaged(kind, "the file ends before the image data")
        if data[pos] != 0xFF:
            raise _damaged(kind, f"no marker at byte {pos}")
        marker = data[pos + 1]
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(data):
            raise _damaged(kind, "the file ends inside a header")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > len(data):
            raise _damaged(kind, "the file ends inside a header")
        if marker in _JPEG_SOF:
            if length < 7:
                raise _damaged(kind, "its frame header is too short")
            height, width = struct.unpack_from(">HH", data, pos + 5)
            if height == 0:
                raise DocumentRejected("the JPEG does not state its height in its header; save it again and upload it")
            size = (width, height)
        if marker == 0xDA:  # start of scan
            if size is None:
                raise _damaged(kind, "image data comes before the image header")
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                raise _damaged(kind, "the file ends inside the image data")
            return [size]
        pos += 2 + length
    raise _damaged(kind, f"more than {_MAX_JPEG_SEGMENTS} header segments")


# --- TIFF

_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TAG_WIDTH, _TAG_HEIGHT = 256, 257
# (offsets tag, byte counts tag): strips, and tiles
_TIFF_DATA_TAGS = ((273, 279), (324, 325))


def _tiff_sizes(data: bytes, max_pages: int) -> list[tuple[int, int]]:
    """Follow the chain of image directories (one per page) up to `max_pages + 1` of them.

    Catches a chain that loops back on itself (Pillow would quietly stop there), directories
    or pixel data beyond the end of the file, and reads each page's size from its tags.
    """
    kind = DocumentKind.TIFF
    order = "<" if data[:4] == _TIFF_LE else ">"
    if len(data) < 8:
        raise _damaged(kind, "the header is incomplete")
    (offset,) = struct.unpack_from(order + "I", data, 4)
    seen: set[int] = set()
    sizes: list[tuple[int, int]] = []
    while offset and len(sizes) <= max_pages:
        page = len(sizes) + 1
        if offset in seen:
            raise DocumentRejected(
                f"the TIFF's list of pages loops back on itself after page {page - 1}; the file is damaged or "
                "made to trap readers: save it again and upload it"
            )
        seen.add(offset)
        if offset < 8 or offset + 2 > len(data):
            raise _damaged(kind, f"page {page}'s directory lies outside the file")
        (count,) = struct.unpack_from(order + "H", data, offset)
        end = offset + 2 + 12 * count
        if count == 0 or end + 4 > len(data):
            raise _damaged(kind, f"page {page}'s directory is incomplete")
        tags = {}
        for entry in range(offset + 2, end, 12):
            tag, kind_code, n, value_at = _tiff_entry(data, order, entry)
            tags[tag] = (kind_code, n, value_at)
        width = _tiff_scalar(data, order, tags, _TAG_WIDTH, page)
        height = _tiff_scalar(data, order, tags, _TAG_HEIGHT, page)
        sizes.append((width, height))
        _check_tiff_data_within(data, order, tags, page)
        (offset,) = struct.unpack_from(order + "I", data, end)
    return sizes


def _tiff_entry(data: bytes, order: str, at: int) -> tuple[int, int, int, int]:
    """(tag, type, count, where the values are): inline in the entry when they fit in 4 bytes."""
    tag, kind_code, count = struct.unpack_from(order + "HHI", data, at)
    if _TIFF_TYPE_SIZES.get(kind_code, 0) * count <= 4:
        return tag, kind_code, count, at + 8
    (value_at,) = struct.unpack_from(order + "I", data, at + 8)
    return tag, kind_code, count, value_at


def _tiff_values(data: bytes, order: str, entry: tuple[int, int, int], page: int) -> tuple[int, ...]:
    kind_code, count, at = entry
    if kind_code not in (3, 4):
        raise _damaged(DocumentKind.TIFF, f"page {page} stores a size or offset as type {kind_code}")
    fmt = order + ("H" if kind_code == 3 else "I") * count
    if at + struct.calcsize(fmt) > len(data):
        raise _damaged(DocumentKind.TIFF, f"page {page}'s tags point beyond the end of the file")
    return struct.unpack_from(fmt, data, at)


def _tiff_scalar(data: bytes, order: str, tags: dict, tag: int, page: int) -> int:
    if tag not in tags or tags[tag][1] < 1:
        raise _damaged(DocumentKind.TIFF, f"page {page} does not state its size")
    return _tiff_values(data, order, (tags[tag][0], 1, tags[tag][2]), page)[0]


def _check_tiff_data_within(data: bytes, order: str, tags: dict, page: int) -> None:
    for offsets_tag, counts_tag in _TIFF_DATA_TAGS:
        if offsets_tag not in tags or counts_tag not in tags:
            continue
        offsets = _tiff_values(data, order, tags[offsets_tag], page)
        counts = _tiff_values(data, order, tags[counts_tag], page)
        if len(offsets) != len(counts):
            detail = f"page {page} lists {len(offsets)} pieces of pixel data but {len(counts)} sizes"
            raise _damaged(DocumentKind.TIFF, detail)
        if any(o + c > len(data) for o, c in zip(offsets, counts, strict=True)):
            raise _damaged(DocumentKind.TIFF, f"page {page}'s pixels lie beyond the end of the file")


_IMAGE_WALKERS = {
    DocumentKind.PNG: _png_sizes,
    DocumentKind.JPEG: _jpeg_sizes,
    DocumentKind.TIFF: _tiff_sizes,
}


# --- Pillow's view of the same file


def _allow_pillow_up_to(max_pixels: int) -> None:
    # Our own size check runs first with a clearer message; Pillow's bomb guard stays on as a
    # second line, raised (never lowered) so it cannot refuse a page our limit allows.
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _open_image(doc: _Document, kind: DocumentKind, max_pixels: int) -> Image.Image:
    _allow_pillow_up_to(max_pixels)
    try:
        return Image.open(doc.image_stream(), formats=[kind.label])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentRejected(
            f"the {kind.label} is larger than the limit of {_megapixels(max_pixels)} ({exc})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means the same to the client
        raise _damaged(kind, f"{type(exc).__name__}: {exc}") from None


def _confirm_pillow_reads(doc: _Document, kind: DocumentKind, sizes: list[tuple[int, int]], max_pixels: int) -> None:
    """Pillow, which decodes the pages later, must parse every header and agree on the sizes."""
    image = _open_image(doc, kind, max_pixels)
    try:
        for index, expected in enumerate(sizes):
            _seek(image, kind, index)
            if image.size != expected:
                raise _damaged(kind, f"page {index + 1}'s headers disagree about its size")
    finally:
        image.close()


def _seek(image: Image.Image, kind: DocumentKind, index: int) -> None:
    if index == 0:
        return
    try:
        image.seek(index)
    except Exception as exc:  # noqa: BLE001
        raise _damaged(kind, f"page {index + 1} cannot be read: {exc}") from None


# --- PDF


def _open_pdf(doc: _Document) -> pdfium.PdfDocument:
    if _PDF_EOF not in doc.data[-_PDF_WINDOW:]:
        raise DocumentRejected("the PDF is truncated (its end-of-file marker is missing); upload the complete file")
    if not isinstance(doc.native, (bytes, str)):
        doc.native.seek(0)
    try:
        return pdfium.PdfDocument(doc.native)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentRejected("the PDF is encrypted; remove the password and upload it again") from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise DocumentRejected(
                "the PDF is protected with an unsupported security handler; remove the protection and upload it again"
            ) from None
        raise _damaged(DocumentKind.PDF, "no readable page table") from None


def _pdf_page_sizes(doc: _Document, *, max_pages: int, dpi: int) -> list[tuple[int, int]]:
    with _PDFIUM_LOCK:
        pdf = _open_pdf(doc)
        try:
            pages = len(pdf)
            _check_page_count(DocumentKind.PDF, pages, max_pages)
            return [_pdf_pixels(pdf, index, dpi) for index in range(pages)]
        finally:
            pdf.close()


def _pdf_pixels(pdf: pdfium.PdfDocument, index: int, dpi: int) -> tuple[int, int]:
    """The page's size in pixels when rendered at `dpi`, as pypdfium2 computes it for render()."""
    try:
        width_pt, height_pt = pdf.get_page_size(index)
    except Exception:  # noqa: BLE001
        raise _damaged(DocumentKind.PDF, f"page {index + 1} has no readable size") from None
    scale = dpi / 72
    return math.ceil(width_pt * scale), math.ceil(height_pt * scale)


# --------------------------------------------------------------------------- reading pages


def iter_pages(data: bytes, *, dpi: int, max_pages: int, max_pixels: int) -> Iterator[Image.Image]:
    """Each page as a greyscale (mode L) image, one at a time, in order.

    Checks the whole document first (`inspect`), then decodes a page only when the caller asks
    for it and closes it when the caller asks for the next one (or closes the iterator). PDF
    pages are rendered at `dpi`; each image carries its resolution in `image.info["dpi"]` when
    known. Decoding failures become `DocumentRejected` naming the page.
    """
    info = inspect(data, max_pages=max_pages, max_pixels=max_pixels, dpi=dpi)
    doc = _Document(data, data)
    if info.kind is DocumentKind.PDF:
        yield from _pdf_pages(doc, info, dpi)
    else:
        yield from _image_pages(doc, info, max_pixels)


def _image_pages(doc: _Document, info: DocumentInfo, max_pixels: int) -> Iterator[Image.Image]:
    image = _open_image(doc, info.kind, max_pixels)
    try:
        for index in range(info.pages):
            _seek(image, info.kind, index)
            width, height = image.size  # inspected already; checked again as it is what decodes
            _check_page_size(info.kind, index + 1, width, height, max_pixels=max_pixels)
            try:
                page = _greyscale(image)
            except Exception as exc:  # noqa: BLE001 - truncated data, bad compression, CRC errors...
                raise DocumentRejected(
                    f"page {index + 1} of the {info.kind.label} cannot be decoded ({exc}); export or scan it again"
                ) from None
            try:
                yield page
            finally:
                page.close()
    finally:
        image.close()


_EXIF_ORIENTATION = 0x0112


def _greyscale(frame: Image.Image) -> Image.Image:
    """A decoded, upright, greyscale copy of the current frame: what Tesseract reads best."""
    frame.load()
    dpi = frame.info.get("dpi")
    upright = frame
    if frame.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        upright = ImageOps.exif_transpose(frame)  # phone photos of documents are often turned
    if upright.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Plain conversion clips 16-bit values to 255 (a white page); scale them instead.
        grey = upright.convert("I").point(lambda v: v / 256).convert("L")
    elif upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        # Transparent areas become white paper, not black.
        rgba = upright.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        grey = Image.alpha_composite(background, rgba).convert("L")
    else:
        grey = upright.convert("L")
    if dpi:
        grey.info["dpi"] = dpi
    return grey


def _pdf_pages(doc: _Document, info: DocumentInfo, dpi: int) -> Iterator[Image.Image]:
    with _PDFIUM_LOCK:
        pdf = _open_pdf(doc)
    try:
        for index in range(info.pages):
            with _PDFIUM_LOCK:
                bitmap = _render(pdf, index, dpi)
            try:
                # The image shares the bitmap's memory: close the image first, then free the bitmap.
                page = bitmap.to_pil()
                try:
                    page.info["dpi"] = (dpi, dpi)
                    yield page
                finally:
                    page.close()
            finally:
                with _PDFIUM_LOCK:
                    bitmap.close()
    finally:
        with _PDFIUM_LOCK:
            pdf.close()


def _render(pdf: pdfium.PdfDocument, index: int, dpi: int) -> pdfium.PdfBitmap:
    try:
        page = pdf[index]
        try:
            return page.render(scale=dpi / 72, grayscale=True)
        finally:
            page.close()
    except Exception as exc:  # noqa: BLE001
        raise DocumentRejected(f"page {index + 1} of the PDF cannot be rendered ({exc}); export it again") from None
