"""Training side -> edge models: calibration sets, TFLite conversion presets, QAT, validation. Needs TensorFlow."""
