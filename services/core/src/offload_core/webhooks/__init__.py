"""Webhooks: signatures, the SSRF guard on callback URLs, and sending one delivery (the gateway's
outbox dispatcher, maintenance/webhooks.py, calls it)."""
