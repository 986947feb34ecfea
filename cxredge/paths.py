"""Where the bundled defaults live. TF-free."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DATA = PACKAGE_DIR / "data" / "sample"
BUNDLED_WEIGHTS = PACKAGE_DIR / "weights" / "mobilenet_7_5_224_tf.h5"
BUNDLED_WEIGHTS_ALPHA = 0.75
DEFAULT_RUN = Path("runs") / "default"
