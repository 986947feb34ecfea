"""On-disk documents the edge side reads and writes: sidecars, bundles, prediction fingerprints. TF-free."""
