"""The project's one Keras: tf_keras (Keras 2), since tensorflow-model-optimization rejects Keras 3.

Import Keras only from here (`from cxredge.keras import keras, tf`), so a later switch is one line.
Never import this module from cxredge.edge.

TensorFlow's start-up noise is kept off the console unless `cxredge --verbose` (or CXREDGE_VERBOSE=1):
TF_CPP_MIN_LOG_LEVEL=3 silences its C++ warnings and errors (cuInit / CUDA errors on a CPU machine,
"NodeDef mentions attribute"), absl's Python logging is set to ERROR, and the lines its native libraries
print to stderr while TensorFlow is imported ("Could not find cuda drivers", "oneDNN custom operations",
"All log messages before absl::InitializeLog()"), which no setting silences, are filtered out of fd 2;
every other line printed during the import is passed on.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

VERBOSE = os.environ.get("CXREDGE_VERBOSE", "") not in ("", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if VERBOSE else "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
NOISE = re.compile(r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
                   r"Could not find cuda drivers|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
                   r"computation placer already registered|TF-TRT Warning|NodeDef mentions attribute|"
                   r"This TensorFlow binary is optimized to use available CPU instructions|"
                   r"rebuild TensorFlow with the appropriate compiler flags|"
                   r"^fully_quantize: \d, inference_type: ")


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """Send fd 2 to a temporary file for the block, then pass on its lines that are not NOISE."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(True) if not NOISE.search(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


try:
    with quiet_native_stderr(not VERBOSE):
        import tensorflow as tf  # noqa: E402
        import tf_keras as keras  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the install
    from cxredge.errors import CxrError

    raise CxrError(f"this command needs the training extra: pip install 'cxredge[train]' ({exc})") from None

tf.get_logger().setLevel("INFO" if VERBOSE else "ERROR")
if not VERBOSE:
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)

__all__ = ["keras", "tf", "quiet_native_stderr"]
