"""The controller's HTTP API (FastAPI; OpenAPI document at /openapi.json, docs at /docs)."""
