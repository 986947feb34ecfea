"""The project's one Keras: tf_keras (Keras 2), since tensorflow-model-optimization rejects Keras 3.

Import Keras only from here (`from cxredge.keras import keras, tf`), so a later switch is one line.
Never import this module from cxredge.edge.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

try:
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the install
    from cxredge.errors import CxrError

    raise CxrError(f"this command needs the training extra: pip install 'cxredge[train]' ({exc})") from None

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf"]
