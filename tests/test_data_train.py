"""cxredge.train.data: decoding with progress, leakage and skipped-image accounting (TF-free, fast)."""
from __future__ import annotations

import io
import shutil

import pytest
from rich.console import Console

from cxredge.errors import CxrError
from cxredge.train.data import load_data


def quiet_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, force_terminal=False), buf


def test_clean_data_has_no_leaks_or_skips(tiny_data):
    console, buf = quiet_console()
    data = load_data(tiny_data, console=console)
    assert data.classes == ("alpha", "beta", "delta", "gamma")
    assert [len(data.splits[s].y) for s in ("train", "val", "test")] == [32, 16, 16]
    assert data.leaks == {} and data.skipped == []
    assert "warning" not in buf.getvalue()


def test_duplicates_across_splits_are_counted_per_pair(tiny_data_copy):
    src = tiny_data_copy / "train" / "gamma" / "gamma_train_0.png"
    shutil.copy(src, tiny_data_copy / "val" / "gamma" / "dup_val.png")
    shutil.copy(src, tiny_data_copy / "test" / "gamma" / "dup_test.png")
    shutil.copy(tiny_data_copy / "val" / "beta" / "beta_val_1.png", tiny_data_copy / "test" / "beta" / "dup2.png")
    console, buf = quiet_console()
    data = load_data(tiny_data_copy, console=console)
    assert data.leaks == {"train/val": 1, "train/test": 1, "val/test": 2}
    assert "leakage: 4 image(s)" in buf.getvalue()


def test_corrupt_image_raises_or_is_skipped(tiny_data_copy):
    bad = tiny_data_copy / "val" / "delta" / "cut_short.png"
    bad.write_bytes((tiny_data_copy / "val" / "delta" / "delta_val_0.png").read_bytes()[:200])
    with pytest.raises(CxrError, match="cut_short.png"):
        load_data(tiny_data_copy, console=quiet_console()[0])
    console, buf = quiet_console()
    data = load_data(tiny_data_copy, skip_bad=True, console=console)
    assert data.skipped == [str(bad)] and len(data.splits["val"].y) == 16
    assert "skipped 1 unreadable" in buf.getvalue()
