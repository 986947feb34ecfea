#!/usr/bin/env bash
# cxredge on 64-bit Raspberry Pi OS, emulated: the base install (`pip install cxredge`, no TensorFlow)
# runs `python -m cxredge predict` and `bench` on aarch64 Debian bookworm under qemu, and its int8
# predictions (class and raw uint8 outputs) must equal the x86 host's on the same images.
#
#   sudo tools/arm64_smoke.sh            # prints PASS or FAIL on the last line, exit 0 / 1
#
# Env: RUN=runs/full (a run with <VARIANT>/int8.tflite + sidecar), VARIANT=two_conv, N=3 images per class
# from the bundled sample's test split, SMOKE=../shared/tools/arm64-smoke/smoke.sh (the emulator
# wrapper: debootstrap + qemu-user, see its README), A=/tmp/arm64 (its work dir; kept between runs),
# QEMU_CPU=cortex-a72 (Pi 4) | cortex-a76 (Pi 5), WHEEL=a cxredge wheel to install (default: this folder,
# built with pip wheel), TEST_DIR=<class folders> (default cxredge/data/sample/test). Needs root, apt and
# the pip registry. tools/arm64_wheel_smoke.sh runs it with the device wheel and tiny models.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=${RUN:-runs/full}
VARIANT=${VARIANT:-two_conv}
N=${N:-3}
SMOKE=${SMOKE:-$ROOT/../shared/tools/arm64-smoke/smoke.sh}
PY=${PY:-$ROOT/.venv/bin/python}
export A=${A:-/tmp/arm64}
T0=$SECONDS
log() { printf '[arm64_smoke %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { log "$*"; echo "FAIL: $*"; exit 1; }

[ -f "$RUN/$VARIANT/int8.tflite" ] || fail "$RUN/$VARIANT/int8.tflite not found (set RUN=, VARIANT=)"
[ -x "$SMOKE" ] || fail "$SMOKE not found (set SMOKE=)"

# 1. A small labelled set (N per class of the bundled sample's test split) and a bundle with the int8 model.
STAGE=$(mktemp -d /tmp/cxredge-arm64.XXXX)
trap 'rm -rf "$STAGE"' EXIT
for d in "${TEST_DIR:-cxredge/data/sample/test}"/*/; do
  cls=$(basename "$d")
  mkdir -p "$STAGE/data/train/$cls" "$STAGE/data/val/$cls" "$STAGE/data/test/$cls"
  ls "$d" | sort | head -n "$N" | while read -r f; do cp "$d/$f" "$STAGE/data/test/$cls/"; cp "$d/$f" "$STAGE/data/train/$cls/"; cp "$d/$f" "$STAGE/data/val/$cls/"; done
done
mkdir -p "$STAGE/stage"
"$PY" -m cxredge export --run "$RUN" --variant "$VARIANT" --precision int8 --with-test-images \
  --data "$STAGE/data" --out "$STAGE/stage/bundle.zip" > "$STAGE/export.log" 2>&1 || fail "export: $(tail -1 "$STAGE/export.log")"
cp -r "$STAGE/data/test" "$STAGE/stage/images"

# 2. x86 reference predictions.
"$PY" -m cxredge predict "$STAGE/stage/bundle.zip" "$STAGE/stage/images" --variant "$VARIANT" --json \
  > "$STAGE/predict_x86.json" 2> "$STAGE/predict_x86.err" || fail "x86 predict: $(tail -1 "$STAGE/predict_x86.err")"
log "x86: $(grep -c '"label"' "$STAGE/predict_x86.json") predictions"

# 3. The base install on emulated aarch64 (PROJECT=. is built to a wheel; REQS = the base dependencies).
mkdir -p "$STAGE/nomodels"
PROJECT="${WHEEL:-$ROOT}" MODELS="$STAGE/nomodels" "$SMOKE" install > "$STAGE/install.log" 2>&1 || { tail -20 "$STAGE/install.log"; fail "arm64 install"; }
R=$A/rootfs
rm -rf "$R/smoke/stage"; cp -r "$STAGE/stage" "$R/smoke/stage"
CMD="python -c 'import platform, sys; print(\"arm64 python\", platform.machine(), sys.version.split()[0])' && \
python -c 'import cxredge.edge.bench.measure, sys; assert not [m for m in sys.modules if m.startswith(\"tensorflow\")]; print(\"no tensorflow\")' && \
python -m cxredge predict stage/bundle.zip stage/images --variant $VARIANT --json > stage/predict_arm64.json && \
python -m cxredge bench stage/bundle.zip --runs 3 --warmup 1 --out stage/bench"
PROJECT="${WHEEL:-$ROOT}" MODELS="$STAGE/nomodels" SMOKE_CMD="$CMD" "$SMOKE" run > "$STAGE/run.log" 2>&1 || { tail -30 "$STAGE/run.log"; fail "arm64 run"; }
grep -E "arm64 python|no tensorflow|XNNPACK delegate" "$STAGE/run.log" | sort -u >&2 || true

# 4. Same int8 answers? Compare class and raw output per image; show the bench row.
rc=0
"$PY" - "$STAGE/predict_x86.json" "$R/smoke/stage/predict_arm64.json" "$R/smoke/stage/bench/bench.json" <<'EOF' || rc=$?
import json, sys
from pathlib import Path
x86, arm = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
bench = json.loads(Path(sys.argv[3]).read_text())
key = lambda p: "/".join(Path(p["image"]).parts[-2:])
a = {key(p): p for p in arm["predictions"]}
same_label = sum(a[key(p)]["label"] == p["label"] for p in x86["predictions"] if key(p) in a)
same_raw = sum(a[key(p)]["raw"] == p["raw"] for p in x86["predictions"] if key(p) in a)
n = len(x86["predictions"])
d = bench["device"]
print(f"x86 runtime {x86['runtime']}; arm64 runtime {arm['runtime']} on {d['machine']} ({d['cpu_model']}, {d['os']}, Python {d['python']})")
for r in bench["results"]:
    print(f"arm64 bench {r['model']} {r['delegate']} x{r['threads']}: status {r['status']}, accuracy {r['accuracy']}, "
          f"median {r['latency_ms']['median'] if r['latency_ms'] else None} ms (emulated: not a Pi's speed)")
print(f"images {n}: same class {same_label}/{n}, identical raw int8 outputs {same_raw}/{n}")
ok = n > 0 and len(a) == n and same_label == n and same_raw == n and d["machine"] == "aarch64" \
     and all(r["status"] == "ok" for r in bench["results"])
sys.exit(0 if ok else 1)
EOF
log "total $((SECONDS - T0)) s"
if [ $rc = 0 ]; then echo "PASS: arm64 (emulated bookworm) base install gives the x86 int8 predictions ($((SECONDS - T0)) s)"; else echo "FAIL: arm64 predictions differ or bench failed"; exit 1; fi
