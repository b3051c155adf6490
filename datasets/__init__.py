"""Labeled images: importers for the formats engineers have, immutable snapshots, exports for training."""
