"""Training settings: one frozen dataclass, saved into run.json next to what it produced."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cxredge.errors import CxrError
from cxredge.vocab import STUDY_VARIANTS

STRATEGIES = ("auto", "mirrored", "cpu")
CLASS_WEIGHTS = ("none", "balanced")
BN_MODES = ("train", "inference")
FINETUNE_HEADS = ("linear", "mlp")
FINETUNE_AUGMENTS = ("light", "standard", "none")
CACHE_DTYPES = ("auto", "float16", "float32")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run (defaults tuned on the val split of chest_xray_4class)."""
    variants: tuple[str, ...] = STUDY_VARIANTS
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
    unfreeze_blocks: int | str = "all"  # finetune: "all" (the whole network) or the last 1..13 blocks
    dropout: float = 0.3
    label_smoothing: float = 0.1
    finetune_epochs: int = 12
    finetune_lr: float = 2e-4  # finetune phase 2: peak learning rate (AdamW, warm-up then cosine decay)
    finetune_patience: int = 6  # finetune phase 2: early stop after this many epochs without val macro-F1 gain
    warmup_epochs: float = 1.0  # finetune phase 2: linear warm-up from ~0 to the peak
    weight_decay: float = 0.05  # finetune phase 2: AdamW decoupled weight decay (not on BN or biases)
    # finetune phase 2: BatchNorm frozen on ImageNet statistics (inference) or batch statistics (train)
    bn_mode: str = "inference"
    bn_freeze_blocks: int = 0  # finetune, --bn-mode train: BN of the stem + blocks 1..K keeps ImageNet statistics
    finetune_head: str = "linear"  # finetune: dropout + Dense(C) on the logits, or the Dense 1024/512/C mlp
    pair_weight: float = 1.0  # finetune phase 2: loss weight of the Bacterial/Viral images, times this
    ema: float = 0.0  # finetune phase 2: decay of a weight moving average that is scored and kept (0 = off)
    # finetune phase 2 augmentation preset (train/augment.py); none won on val over 3 seeds
    finetune_augment: str = "none"
    max_minutes: float = 0.0  # stop training when the next epoch would end past this budget (0 = none)
    cache_dir: str = ""  # the feature cache's folder ("" = <out>/feature_cache); shared by runs on the same data
    # cached cuts: float32 (exact, the default: float16 moved test accuracy by up to 1.3 pt at the same seed,
    # docs/scale.md) | auto (float16 where it keeps them to 1e-3 of their range) | float16
    cache_dtype: str = "float32"
    audit: bool = True  # duplicates + shortcut probe on the decoded images before training (audit.json)
    data_options: dict | None = None  # --data table columns, --label-map, --patient-regex (edge/table.DataOptions)

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
            (self.unfreeze_blocks == "all"
             or (isinstance(self.unfreeze_blocks, int) and 1 <= self.unfreeze_blocks <= 13),
             f"--unfreeze-blocks {self.unfreeze_blocks}: expected all or 1..13"),
            (self.finetune_patience >= 0, f"--finetune-patience {self.finetune_patience}: must be >= 0"),
            (self.warmup_epochs >= 0, f"--warmup-epochs {self.warmup_epochs}: must be >= 0"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0"),
            (0 <= self.bn_freeze_blocks <= 13, f"--bn-freeze-blocks {self.bn_freeze_blocks}: expected 0..13"),
            (self.bn_mode in BN_MODES, f"--bn-mode {self.bn_mode}: expected train or inference"),
            (not (self.bn_freeze_blocks and self.bn_mode != "train"),
             f"--bn-freeze-blocks {self.bn_freeze_blocks}: needs --bn-mode train "
             f"(--bn-mode {self.bn_mode} already freezes every BatchNorm)"),
            (self.finetune_head in FINETUNE_HEADS, f"--finetune-head {self.finetune_head}: expected linear or mlp"),
            (self.finetune_augment in FINETUNE_AUGMENTS,
             f"--finetune-augment {self.finetune_augment}: expected light, standard or none"),
            (self.pair_weight > 0, f"--pair-weight {self.pair_weight}: must be > 0 (1 = off)"),
            (0 <= self.ema < 1, f"--ema {self.ema}: expected 0 (off) <= decay < 1, e.g. 0.998"),
            (self.cache_dtype in CACHE_DTYPES, f"--cache-dtype {self.cache_dtype}: expected auto, float16 or float32"),
            (self.max_minutes >= 0, f"--max-minutes {self.max_minutes}: must be >= 0 (0 = no budget)"),
        ]
        for ok, message in checks:
            if not ok:
                raise CxrError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainSettings":
        return dataclasses.replace(self, **changes)
