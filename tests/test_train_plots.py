"""plots.py writes real PNGs and imports without TensorFlow."""
from __future__ import annotations

import subprocess
import sys

from PIL import Image

from cxredge.plots import plot_confusion, plot_curves


def test_curves_and_confusion_pngs(tmp_path):
    hist = {"loss": [1.2, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.95], "accuracy": [0.4, 0.6, 0.7],
            "val_accuracy": [0.45, 0.55, 0.5], "best_epoch": 2}
    p = plot_curves(hist, tmp_path / "curves.png", "t")
    c = plot_confusion([[5, 1], [2, 7]], ["a", "b"], tmp_path / "confusion.png", "t")
    for path in (p, c):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp files left


def test_plots_module_does_not_import_tensorflow():
    code = ("import sys; import cxredge.plots as p; "
            "assert 'tensorflow' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
