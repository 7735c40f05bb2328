"""Pure core: normalisation, hashing, identity, mapping, dedup and payload building (no I/O)."""
