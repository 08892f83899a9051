"""Command groups of the `mpt` CLI."""
