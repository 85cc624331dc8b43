"""OCR input: documents sniffed, measured and refused before any page is decoded, pages
rendered one at a time, and OCR language codes."""
