"""Training-set formats, readers, validation, task manifests, mixtures, samplers and collation."""
