"""Webhooks: signatures, the SSRF guard on callback URLs, and delivery from the workers."""
