#!/usr/bin/env bash
# The device wheel (python -m cxredge.remote.wheel: what `bench --remote` installs) against the full wheel
# (python -m pip wheel --no-deps .: training weights and sample images included), side by side.
#   tools/device_wheel_size.sh > benchmarks/results/bench/device_wheel_size.txt     (needs the pip registry)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3}
T=$(mktemp -d /tmp/cxredge-wheels.XXXX)
trap 'rm -rf "$T"' EXIT
echo "# tools/device_wheel_size.sh, $(date -u +%F), $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(nproc) cores)"
cp -r "$ROOT/cxredge" "$ROOT/pyproject.toml" "$ROOT/README.md" "$T/" && find "$T/cxredge" -name __pycache__ -prune -exec rm -rf {} +
(cd "$T" && "$PY" -m pip wheel -q --no-deps -w "$T/full" . 2>&1 | grep -iv "^$" || true)
(cd "$T" && PYTHONPATH="$T" "$PY" -m cxredge.remote.wheel "$T/device" > /dev/null)
for kind in full device; do
  w=$(ls "$T/$kind"/*.whl)
  n=$("$PY" -c "import sys, zipfile; print(len(zipfile.ZipFile(sys.argv[1]).namelist()))" "$w")
  printf '%-7s %-34s %11d bytes  %4d members\n' "$kind" "$(basename "$w")" "$(stat -c %s "$w")" "$n"
done
full=$(stat -c %s "$T"/full/*.whl); dev=$(stat -c %s "$T"/device/*.whl)
"$PY" -c "print(f'device / full = {$dev / $full:.4f} ({$full / $dev:.0f}x smaller)')"
