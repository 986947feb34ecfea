"""Running .tflite models: the LiteRT interpreter, the device's facts, benchmark_model output. TF-free."""
