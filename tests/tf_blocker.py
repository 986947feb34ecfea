"""Run Python in a subprocess where importing TensorFlow (or Keras, tfmot, tflite_runtime) fails: the
TF-free boundary tests and the base-install tests use it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """
import sys
class _NoTensorFlow:
    BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tflite_runtime")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"blocked by the cxredge boundary test: {name}")
        return None
sys.meta_path.insert(0, _NoTensorFlow())
"""


def blocked_env(tmp_path: Path) -> dict:
    site = tmp_path / "block_tf"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return env


def run_blocked(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=blocked_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
