"""Pieces both FastAPI services share: problem+json errors, API-key auth, health, lifespan."""
