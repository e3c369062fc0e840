"""Built-in source types."""
