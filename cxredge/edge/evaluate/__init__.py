"""Metrics from real predictions: classification, clinical, the validation block. TF-free."""
