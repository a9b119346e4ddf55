"""Small helpers shared by every stage: errors, atomic file writes, devices, cache paths."""
