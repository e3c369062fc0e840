"""`bitbd-tui`: the operator's terminal console for a bitbd daemon."""
