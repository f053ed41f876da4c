"""Ingest: from decoded device messages to durable rows and files, with group commit."""
