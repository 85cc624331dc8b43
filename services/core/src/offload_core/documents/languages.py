"""The OCR job's parameters, validated by the gateway and read again by worker-ocr."""

from __future__ import annotations

import re

# Tesseract language codes joined by '+', e.g. "eng" or "eng+deu". Whether each one is
# installed is for the worker to say; the syntax is checked here so junk never queues.
_LANGUAGES = re.compile(r"^[A-Za-z_]{2,24}(\+[A-Za-z_]{2,24}){0,7}$")


def parse_languages(text: str | None, default: str) -> str:
    value = (text or default).strip()
    if not _LANGUAGES.match(value):
        raise ValueError(
            "languages must be Tesseract language codes joined by '+', e.g. 'eng' or 'eng+deu' (at most 8)"
        )
    return value
