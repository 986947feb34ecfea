"""The training side (needs the [train] extra: TensorFlow, tf_keras, tfmot, matplotlib)."""
