"""The operator dashboard served by the status service at `/`: plain HTML, CSS and JavaScript
that call the same JSON APIs as any client, with the API key the user enters (kept in the
browser's sessionStorage, sent as an Authorization header, never put in a URL)."""

from .routes import mount_dashboard

__all__ = ["mount_dashboard"]
