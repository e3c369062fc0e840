"""Fetching, extracting and chunking documents: the pieces ingestion jobs are made of."""
