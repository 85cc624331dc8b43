"""Documents for tests: rendered pages of known text in every accepted format, and hostile files.

Everything here is deterministic: the same call returns the same bytes, so a failing OCR test
can be reproduced. Good documents come with the text that was drawn on them (`Document.texts`,
one string per page) so tests can measure the character error rate with `cer()`.

Hostile files are built by hand where the point is what their headers claim (a PNG claiming
100000x100000 pixels, a PDF claiming 10,000 pages, a TIFF whose page list loops): they stay
tiny, and anything that decodes them instead of inspecting them would run out of memory.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

DPI = 300
A4_PIXELS = (2480, 3508)  # 210 x 297 mm at 300 dpi
A4_POINTS = (595, 842)
MARGIN = 220
FONT_PX = 42  # 10 pt at 300 dpi
PARAGRAPHS_PER_PAGE = 5

# Plain prose of the kind people scan: minutes, letters, reports, manuals.
PARAGRAPHS: tuple[str, ...] = (
    "The committee met on Tuesday morning to review the annual budget for the regional library "
    "service. After a short introduction, the treasurer explained that the cost of heating the main "
    "building had risen by 14 percent since last year, while visitor numbers had fallen only slightly.",
    "Several members asked whether the mobile library could continue to visit the smaller villages in "
    "the north of the county. The head librarian replied that the van was old but reliable, and that "
    "a replacement would not be needed before the spring of 2027.",
    "A proposal to extend the opening hours on Saturday afternoons was discussed at some length. Staff "
    "would prefer a rota that gives everyone two free weekends each month, and the union representative "
    "asked for the change to be tried for three months before any final decision is made.",
    "The report on digital services showed that loans of electronic books had doubled over two years. "
    "Most readers borrow them on their phones in the evening, which suggests that the printed collection "
    "and the online catalogue serve rather different needs.",
    "Turning to the building itself, the architect noted damp in the basement archive and recommended "
    "a survey of the drains. Until the work is finished, the local history collection will be stored in "
    "the reading room on the first floor, where the temperature is easier to control.",
    "Our records show that the parcel left the warehouse on 3 June and reached the sorting office two "
    "days later. Unfortunately the address label had been damaged in transit, so the driver was unable "
    "to complete the delivery and returned the parcel to the depot.",
    "We apologise for the delay and have arranged for a new parcel to be sent by express courier at no "
    "extra cost. Please check that the postcode and house number shown on your account are correct, "
    "because the courier cannot change them once the parcel has been collected.",
    "If you would prefer a refund instead, reply to this letter within fourteen days and include your "
    "order number. The money will be returned to the card used for the original payment, which normally "
    "takes between three and five working days.",
    "The river rises in the hills above the town and flows for about forty miles before it reaches the "
    "sea. In wet winters the lower fields are flooded for several weeks, and the old stone bridge near "
    "the mill has been closed twice in the last ten years.",
    "Farmers along the valley have planted hedges and small woods to slow the water, and the results so "
    "far are encouraging. Measurements taken after the storms in January showed that the peak flow at "
    "the bridge was lower than in any comparable storm recorded since 1998.",
    "Before you install the new software, make sure that your computer has at least 8 GB of memory and "
    "that all important files have been copied to an external drive. The installation takes about "
    "twenty minutes, and the computer will restart twice during the process.",
    "When the program starts for the first time, it asks for the name of your organisation and the "
    "email address of the person responsible for security. Both can be changed later in the settings "
    "menu, but the licence key cannot be moved to another computer without contacting support.",
    "Most problems reported by users are caused by an old version of the network driver. If the program "
    "cannot connect to the server, open the control panel, check for updates, and try again before you "
    "call the help desk on 0800 555 0199.",
    "Volunteers continue to run the reading groups for children during the school holidays. Last summer "
    "more than 350 children took part, and many of them returned in the autumn with their parents to "
    "join the library for the first time.",
    "The meeting closed with a vote on the draft budget, which was approved by nine votes to two. The "
    "minutes will be published on the council website within ten working days, and members of the "
    "public may send written questions to the clerk before the next meeting in March.",
)


@dataclass(frozen=True)
class Document:
    data: bytes
    texts: tuple[str, ...]  # what was drawn on each page, in page order

    @property
    def text(self) -> str:
        return "\f".join(self.texts)


# --------------------------------------------------------------------------- text metrics


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1).

    Bit-parallel (Myers 1999, Hyyrö's formulation): one pass over `b`, each step a handful of
    operations on integers `len(a)` bits wide. A page of text takes milliseconds, where the
    textbook table would take seconds in Python.
    """
    if not a:
        return len(b)
    if not b:
        return len(a)
    match_masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        match_masks[ch] = match_masks.get(ch, 0) | (1 << i)
    all_ones = (1 << len(a)) - 1
    top = 1 << (len(a) - 1)
    plus, minus, score = all_ones, 0, len(a)  # vertical deltas of the current column
    for ch in b:
        eq = match_masks.get(ch, 0)
        xv = eq | minus
        xh = ((((eq & plus) + plus) & all_ones) ^ plus) | eq
        h_plus = (minus | ~(xh | plus)) & all_ones
        h_minus = plus & xh
        if h_plus & top:
            score += 1
        elif h_minus & top:
            score -= 1
        h_plus = ((h_plus << 1) | 1) & all_ones
        h_minus = (h_minus << 1) & all_ones
        plus = (h_minus | ~(xv | h_plus)) & all_ones
        minus = h_plus & xv
    return score


def cer(expected: str, got: str) -> float:
    """Character error rate: edit distance over the expected length, whitespace normalised."""
    expected, got = normalise_whitespace(expected), normalise_whitespace(got)
    if not expected:
        return 0.0 if not got else 1.0
    return edit_distance(expected, got) / len(expected)


# --------------------------------------------------------------------------- rendering


def page_text(page: int) -> str:
    """The text of page `page` (1-based): paragraphs separated by blank lines; pages differ."""
    start = (page - 1) * PARAGRAPHS_PER_PAGE
    chosen = [PARAGRAPHS[(start + k) % len(PARAGRAPHS)] for k in range(PARAGRAPHS_PER_PAGE)]
    return "\n\n".join(chosen)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ):
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, FONT_PX)
    return ImageFont.load_default(size=FONT_PX)


def _wrap(text: str, draw: ImageDraw.ImageDraw, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=_font()) <= width:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
        lines.append("")  # blank line between paragraphs
    return lines[:-1]


def render_page(text: str, *, scanned: bool = False, seed: int = 0, size: tuple[int, int] = A4_PIXELS) -> Image.Image:
    """`text` typeset on a white page (mode L) at 300 dpi.

    `scanned` adds what a cheap office scanner does: a slight skew, an off-white background,
    speckle noise and a little blur. Still clean enough for Tesseract to read almost perfectly.
    """
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    line_height = round(FONT_PX * 1.45)
    y = MARGIN
    for line in _wrap(text, draw, size[0] - 2 * MARGIN):
        if line:
            draw.text((MARGIN, y), line, fill=0, font=_font())
        y += line_height
    if y > size[1] - MARGIN:
        raise ValueError("text does not fit on the page")
    if scanned:
        page = _scan_look(page, seed)
    return page


def _scan_look(page: Image.Image, seed: int) -> Image.Image:
    rng = random.Random(seed)
    angle = rng.uniform(0.3, 0.7) * rng.choice((-1, 1))
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    # Noise from one seeded tile repeated across the page: deterministic and cheap to make.
    tile_side = 512
    tile = Image.frombytes("L", (tile_side, tile_side), rng.randbytes(tile_side * tile_side))
    # Most pixels darken by 0-12 (paper grain); about 0.5% become specks 90 levels darker.
    tile = tile.point([90 if v >= 254 else v // 22 for v in range(256)])
    noise = Image.new("L", page.size)
    for x in range(0, page.width, tile_side):
        for y in range(0, page.height, tile_side):
            noise.paste(tile, (x, y))
    return ImageChops.subtract(page, noise)


@lru_cache(maxsize=16)
def _rendered(page: int, scanned: bool) -> Image.Image:
    return render_page(page_text(page), scanned=scanned, seed=page)


def page_image(number: int = 1, *, scanned: bool = False) -> Image.Image:
    """Page `number` of the sample text, rendered (mode L, A4 at 300 dpi); yours to change."""
    # Always a copy of the cached render: saving the same Image objects in a second multi-page
    # TIFF failed inside Pillow's libtiff encoder (Pillow 13), and callers may draw on it.
    return _rendered(number, scanned).copy()


def _pages(count: int, scanned: bool) -> list[Image.Image]:
    return [page_image(n, scanned=scanned) for n in range(1, count + 1)]


def _texts(count: int) -> tuple[str, ...]:
    return tuple(page_text(n) for n in range(1, count + 1))


def png_document(*, scanned: bool = False) -> Document:
    buf = io.BytesIO()
    page_image(1, scanned=scanned).save(buf, "PNG", dpi=(DPI, DPI))
    return Document(buf.getvalue(), _texts(1))


def jpeg_document(*, scanned: bool = True) -> Document:
    buf = io.BytesIO()
    page_image(1, scanned=scanned).save(buf, "JPEG", quality=85, dpi=(DPI, DPI))
    return Document(buf.getvalue(), _texts(1))


def tiff_document(pages: int = 3, *, scanned: bool = False) -> Document:
    images = _pages(pages, scanned)
    buf = io.BytesIO()
    images[0].save(
        buf, "TIFF", save_all=True, append_images=images[1:], compression="tiff_adobe_deflate", dpi=(DPI, DPI)
    )
    return Document(buf.getvalue(), _texts(pages))


def pdf_document(pages: int = 3, *, scanned: bool = False) -> Document:
    """Pages as images in a PDF, the way scanners write them: A4 pages at 300 dpi."""
    images = _pages(pages, scanned)
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=float(DPI))
    return Document(buf.getvalue(), _texts(pages))


def text_png(text: str = "Trace this page", size: tuple[int, int] = (480, 120)) -> bytes:
    """One short line of text on a small page: an OCR job that runs in well under a second."""
    page = Image.new("L", size, 255)
    ImageDraw.Draw(page).text((20, size[1] // 3), text, fill=0)
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return buf.getvalue()


def small_png(size: tuple[int, int] = (64, 32)) -> bytes:
    """A tiny valid PNG, for tests about containers rather than text."""
    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- hand-built PDFs


def build_pdf(objects: list[bytes]) -> bytes:
    """A PDF of the given objects (object n is objects[n-1], the catalog is object 1), with a
    correct cross-reference table and trailer."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)


def blank_pages_pdf(pages: int, *, media_box: tuple[int, int] = A4_POINTS) -> bytes:
    """A PDF of `pages` empty pages, written directly: 10,000 pages take milliseconds."""
    first_page = 3
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count %d /Kids [%s] >>" % (pages, kids),
    ]
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] >>" % media_box
    objects.extend(page for _ in range(pages))
    return build_pdf(objects)


def many_pages_pdf(pages: int = 10_000) -> bytes:
    return blank_pages_pdf(pages)


def huge_page_pdf() -> bytes:
    """One page of 200 x 200 inches (the largest PDF allows): 60000 x 60000 pixels at 300 dpi."""
    return blank_pages_pdf(1, media_box=(14_400, 14_400))


def truncated_pdf() -> bytes:
    data = pdf_document(pages=2).data
    return data[: len(data) * 3 // 5]


def corrupt_pdf() -> bytes:
    """A PDF header and end marker with random bytes between: nothing a reader can rebuild."""
    rng = random.Random(7)
    return b"%PDF-1.7\n" + rng.randbytes(20_000) + b"\n%%EOF\n"


def encrypted_pdf(password: str = "s3cret-pass") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(blank_pages_pdf(1))))
    # RC4 needs no crypto library; what matters is that opening asks for a password.
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- hand-built images


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width x height 8-bit grey pixels, with a few rows of real data.

    Decoding it would need width*height bytes (10 GB by default); the file is under 1 KB.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\xff" * width)  # one row of white, filter type 0
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def png_with_zip_appended() -> bytes:
    """A valid PNG with a ZIP archive after its end: a classic polyglot."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.txt", "not an image")
    return small_png() + archive.getvalue()


def png_header_then_pdf() -> bytes:
    """PNG signature followed by a complete PDF: a PDF reader accepts it (header within 1 KB)."""
    return b"\x89PNG\r\n\x1a\n" + blank_pages_pdf(1)


def truncated_png() -> bytes:
    data = png_document().data
    return data[: len(data) // 2]


def damaged_pixels_png() -> bytes:
    """A PNG whose framing is sound (every chunk whole, each CRC right) but whose compressed
    pixels are damaged: only decoding finds that, so the gateway accepts it (202) and the OCR
    worker fails the job, permanently. The failing OCR job the telemetry tests need."""
    data = bytearray(png_document().data)
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    for k in range(at + 4 + 2, at + 4 + length):  # keep the zlib header, scramble the stream
        data[k] ^= 0x5A
    data[at + 4 + length:at + 8 + length] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 4 + length])))
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = jpeg_document().data
    return data[: len(data) // 3]


def _tiff_ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
    """Little-endian IFD: (tag, type, count, value) entries, sorted as TIFF requires."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        body += struct.pack("<HHII", tag, kind, count, value)
    return body + struct.pack("<I", next_ifd)


SHORT, LONG = 3, 4


def _grey_tiff_entries(width: int, height: int, strip_at: int, strip_len: int) -> list[tuple[int, int, int, int]]:
    return [
        (256, LONG, 1, width),
        (257, LONG, 1, height),
        (258, SHORT, 1, 8),  # bits per sample
        (259, SHORT, 1, 1),  # no compression
        (262, SHORT, 1, 1),  # black is zero
        (273, LONG, 1, strip_at),
        (277, SHORT, 1, 1),  # samples per pixel
        (278, LONG, 1, height),  # rows per strip
        (279, LONG, 1, strip_len),
    ]


def tiff_chain(pages: int, *, loop_to_first: bool = False, sizes: list[tuple[int, int]] | None = None) -> bytes:
    """A TIFF of `pages` IFDs (pages) sharing one 8x8 strip of pixels.

    `loop_to_first` makes the last IFD point back at the first: a reader that follows the
    chain naively never stops. `sizes` lets some pages claim other dimensions.
    """
    header = b"II*\x00" + struct.pack("<I", 8)
    ifd_len = 2 + 9 * 12 + 4
    strip_at = 8 + pages * ifd_len
    strip = b"\xff" * 64
    out = bytearray(header)
    for i in range(pages):
        width, height = (sizes[i] if sizes and i < len(sizes) else (8, 8))
        last = i == pages - 1
        next_ifd = 8 if (last and loop_to_first) else (0 if last else 8 + (i + 1) * ifd_len)
        out += _tiff_ifd(_grey_tiff_entries(width, height, strip_at, len(strip)), next_ifd)
    out += strip
    return bytes(out)


def tiff_with_ifd_loop() -> bytes:
    return tiff_chain(3, loop_to_first=True)


def tiff_with_many_pages(pages: int = 5_000) -> bytes:
    return tiff_chain(pages)


def tiff_with_huge_second_page() -> bytes:
    """Page 1 is fine, page 2 claims 100000x100000 pixels (Pillow checks only the first frame)."""
    return tiff_chain(2, sizes=[(8, 8), (100_000, 100_000)])


def truncated_tiff() -> bytes:
    """A TIFF cut in half: libtiff writes the page directory after the pixels, so it is lost."""
    data = tiff_document(pages=1).data
    return data[: len(data) // 2]
