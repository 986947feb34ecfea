#!/usr/bin/env bash
# The device-wheel route on emulated 64-bit Raspberry Pi OS (aarch64 Debian bookworm under qemu): build the
# lean device wheel of this checkout (python -m cxredge.remote.wheel: no training weights, no sample images),
# pip-install it there with its dependencies from the index (cxredge itself never comes from the index),
# then run `python -m cxredge predict` and `bench` on tiny .tflite models and compare with x86.
#
#   sudo tools/arm64_wheel_smoke.sh      # PASS or FAIL on the last line, exit 0 / 1 (~10 minutes, cold)
#
# Env: PY (a Python with cxredge[train] for the tiny models; default .venv/bin/python), A=/tmp/arm64 (the
# emulator's work dir), QEMU_CPU; see tools/arm64_smoke.sh, which does the emulated part.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
TINY=$(mktemp -d /tmp/cxredge-arm64-tiny.XXXX)
trap 'rm -rf "$TINY"' EXIT
log() { printf '[arm64_wheel_smoke %s] %s\n' "$(date +%T)" "$*" >&2; }

# 1. The device wheel, as `bench --remote` sends it.
WHEEL_LINE=$(PYTHONPATH="$ROOT" "$PY" -m cxredge.remote.wheel "$TINY/dist")
WHEEL=$(ls "$TINY"/dist/cxredge-*.whl)
log "device wheel: $WHEEL_LINE"
log "weights or images in the wheel: $(unzip -l "$WHEEL" | grep -cE '\.(h5|png)$' || true)"

# 2. Tiny models (the test suite's: alpha-0.25 MobileNet, float32 + int8) and a tiny labelled set.
PYTHONPATH="$ROOT/tests:$ROOT" "$PY" - "$TINY" <<'PYEOF' 2> "$TINY/models.log"
import sys
from pathlib import Path
from conftest import make_dataset
from edge_fixtures import build_models, make_run
tiny = Path(sys.argv[1])
data = make_dataset(tiny / "data")
make_run(tiny / "run", build_models(tiny / "models", data), data)
PYEOF
log "tiny run: $(ls "$TINY"/run/*/*.tflite | wc -l) models"

# 3. The emulated install of that wheel, predict and bench (tools/arm64_smoke.sh), 3 images per class.
PYTHONPATH="$ROOT" PY="$PY" RUN="$TINY/run" VARIANT=two_conv N=3 TEST_DIR="$TINY/data/test" WHEEL="$WHEEL" \
  "$ROOT/tools/arm64_smoke.sh"
