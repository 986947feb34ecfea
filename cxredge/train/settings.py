"""Training settings: one frozen dataclass, saved into run.json next to what it produced."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cxredge.errors import CxrError

STRATEGIES = ("auto", "mirrored", "cpu")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run (defaults tuned on the val split of chest_xray_4class)."""
    variants: tuple[str, ...] = ("fc", "one_conv", "two_conv")
    alpha: float = 0.75
    weights: str = "bundled"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-4
    patience: int = 4
    lr_patience: int = 2  # ReduceLROnPlateau on val loss: x0.3 after this many flat epochs (0 = off)
    class_weight: str = "none"
    seed: int = 0
    augment: bool = False
    cache_views: int = 2  # cached views per train image: 1 = as is, 2 = + mirrored, k > 2 = + augmented
    pixel_noise: float = 0.0  # Gaussian pixel noise (gray levels) on augmented/cached extra views
    int8_aware: bool = False  # also train on the int8 backbone's cuts (train/int8_views.py)
    int8_consistency: float = 1.0  # weight of the float/int8 agreement term (train/paired.py)
    skip_bad: bool = False
    strategy: str = "auto"
    unfreeze_blocks: int = 2
    dropout: float = 0.3
    label_smoothing: float = 0.1
    finetune_epochs: int = 8
    finetune_lr: float = 1e-5
    audit: bool = True  # duplicates + shortcut probe on the decoded images before training (audit.json)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs {self.epochs}: must be >= 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be >= 1"),
            (self.lr > 0, f"--lr {self.lr}: must be > 0"),
            (self.patience >= 0, f"--patience {self.patience}: must be >= 0"),
            (self.cache_views >= 1, f"--cache-views {self.cache_views}: must be >= 1"),
            (0 <= self.pixel_noise <= 64, f"--pixel-noise {self.pixel_noise}: expected 0..64 gray levels"),
            (not (self.int8_aware and self.augment and "finetune" not in self.variants),
             "--int8-aware: trains on cached features; it does not combine with --augment"),
            (self.int8_consistency >= 0, f"--int8-consistency {self.int8_consistency}: must be >= 0"),
            (self.lr_patience >= 0, f"--lr-patience {self.lr_patience}: must be >= 0"),
            (self.class_weight in CLASS_WEIGHTS, f"--class-weight {self.class_weight}: expected none or balanced"),
            (self.strategy in STRATEGIES, f"--strategy {self.strategy}: expected one of {', '.join(STRATEGIES)}"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}: expected 0 <= dropout < 1"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing {self.label_smoothing}: expected 0..1"),
            (self.finetune_epochs >= 1, f"--finetune-epochs {self.finetune_epochs}: must be >= 1"),
            (self.finetune_lr > 0, f"--finetune-lr {self.finetune_lr}: must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise CxrError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainSettings":
        return dataclasses.replace(self, **changes)
