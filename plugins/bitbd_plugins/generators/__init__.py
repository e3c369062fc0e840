"""Built-in answer generators."""
