"""Command groups of the `mpt` CLI: one module per group, each with `register(sub, common)`."""
