"""Answering questions: retrieval, generation, the semantic cache, conversations."""
