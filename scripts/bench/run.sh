#!/usr/bin/env bash
# Builds the release binaries and runs the benchmark suite with its
# documented defaults (docs/PERFORMANCE.md); extra arguments go to
# gpu-usage-bench, e.g. --only 1,6 or --max-records 1000000 --steady-minutes 2.
#
#   scripts/bench/run.sh [gpu-usage-bench args...]
#
# Needs MariaDB (GPU_USAGE_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306),
# Redis (GPU_USAGE_TEST_REDIS_URL, default redis://127.0.0.1:6379) and wrk.
# Every benchmark creates its own gu_bench_* databases and drops them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
command -v wrk > /dev/null || { echo "wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release -p gpu-usage-api -p gpu-usage-worker -p gpu-usage -p gpu-usage-bench
exec "$ROOT/target/release/gpu-usage-bench" "$@"
