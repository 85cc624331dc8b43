"""`python -m bench.ocr_baselines ENGINE DIR`: OCR every document in DIR in this one process
and print pages/s as JSON. The baselines the Offload OCR worker is compared with.

ENGINE: `tesserocr` (the library Offload uses, called directly: one model kept loaded, the same
tessdata and page segmentation mode, pages decoded with Pillow and PDFs rendered with
pypdfium2 at 300 dpi), or `pytesseract` (Debian's `tesseract` CLI per page, its defaults; set
OMP_THREAD_LIMIT=1 in the environment for the single-thread variant). One untimed warm-up page.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

DPI = 300


def pages(folder: Path) -> Iterator[Image.Image]:
    for path in sorted(folder.iterdir()):
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
                yield image.convert("L")
        elif path.suffix == ".pdf":
            import pypdfium2 as pdfium

            pdf = pdfium.PdfDocument(path.read_bytes())
            for index in range(len(pdf)):
                page = pdf[index]
                yield page.render(scale=DPI / 72, grayscale=True).to_pil()
                page.close()
            pdf.close()


def main() -> None:
    engine, folder = sys.argv[1], Path(sys.argv[2])
    if engine == "tesserocr":
        import tesserocr

        from offload_core.settings import Settings

        api = tesserocr.PyTessBaseAPI(path=Settings(env="dev").ocr_tessdata, lang="eng", psm=tesserocr.PSM.AUTO)

        def recognise(image: Image.Image) -> str:
            api.SetImage(image)
            api.SetSourceResolution(DPI)
            text = api.GetUTF8Text()
            api.AllWordConfidences()
            return text
    elif engine == "pytesseract":
        import pytesseract

        def recognise(image: Image.Image) -> str:
            return pytesseract.image_to_string(image)
    else:
        raise SystemExit(f"unknown engine {engine}")
    recognise(next(pages(folder)))  # warm-up: model load, page cache
    started = time.perf_counter()
    count, chars = 0, 0
    for image in pages(folder):
        chars += len(recognise(image))
        count += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"pages": count, "seconds": seconds, "pages_per_s": count / seconds, "chars": chars}))


if __name__ == "__main__":
    main()
