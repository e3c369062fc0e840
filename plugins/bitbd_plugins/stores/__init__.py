"""Built-in vector stores."""
