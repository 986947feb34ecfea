"""cxredge bench on this device: measure every model, write bench.json/bench.md. TF-free."""
