"""Answer quality: question files and their evaluation against a running server (`bitbd eval`)."""
