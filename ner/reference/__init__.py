"""The original authors' results: their file layouts, the legacy protocol's scoring, the parity report."""
