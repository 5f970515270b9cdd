#!/usr/bin/env bash
# Install what the benchmarks in benchmarks/ need on Debian/Ubuntu:
# xxhsum (package xxhash), the reference for benchmarks/bench_hash.py; GNU time
# for its peak-memory figure; libCacheSim (PyPI, the `bench` extra), the
# reference for benchmarks/bench_replay.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=()
command -v xxhsum >/dev/null 2>&1 || missing+=(xxhash)
[ -x /usr/bin/time ] || missing+=(time)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

python3 -m pip install -q -e '.[bench]'
echo "benchmark dependencies ready"
