#!/usr/bin/env bash
# A small before/after figure for the HTTP path of one binary: ingest rate
# through POST /records and the latency of one hourly read, on MariaDB.
#
#   scripts/bench/http-smoke.sh BINARY [PORT]
#
# BINARY is an all-in-one `gpu-usage` build (release). It gets a fresh
# database on GPU_USAGE_TEST_MYSQL_URL's server (default root@127.0.0.1),
# created from scripts/gpu_usage_schema.sql, dropped at the end. Prints one
# line per figure. Needs curl, wrk and python3.
set -euo pipefail
BIN=$1
PORT=${2:-18080}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DB="gu_bench_http_$$"
mysql -uroot -h127.0.0.1 -e "CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
mysql -uroot -h127.0.0.1 "$DB" < "$ROOT/scripts/gpu_usage_schema.sql"
WORK=$(mktemp -d)
cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB"
    rm -rf "$WORK"
}
trap cleanup EXIT

GPU_USAGE__DATABASE__URL="mysql://root@127.0.0.1:3306/$DB" GPU_USAGE__API__PORT=$PORT \
    GPU_USAGE__WORKER__HTTP_PORT=$((PORT + 1)) RUST_LOG=warn "$BIN" > "$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.2; done
BASE="http://127.0.0.1:$PORT/api/v1/gpu-usage"

# 20 batches of 1,000 records over the last 7 days, 20 endpoints, 5 specs.
python3 - "$WORK" <<'PY'
import json, random, sys, datetime as dt
random.seed(42)
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
for b in range(20):
    batch = []
    for i in range(1000):
        end = now - dt.timedelta(seconds=random.randint(60, 7 * 86400))
        dur = random.choice([random.randint(1, 60), random.randint(60, 3600)])
        batch.append({"task_id": f"t-{b}-{i}", "endpoint": f"endpoint-{random.randrange(20)}",
                      "spec_name": f"spec-{random.randrange(5)}", "gpu_count": random.choice([1, 2, 4, 8]),
                      "started_at": (end - dt.timedelta(seconds=dur)).isoformat().replace("+00:00", "Z"),
                      "completed_at": end.isoformat().replace("+00:00", "Z"),
                      "status": "FAILED" if random.random() < 0.1 else "COMPLETED"})
    open(f"{sys.argv[1]}/batch{b}.json", "w").write(json.dumps(batch))
PY
start=$(date +%s.%N)
for b in $(seq 0 19); do
    curl -sf -X POST "$BASE/records" -H 'content-type: application/json' \
        --data-binary "@$WORK/batch$b.json" > /dev/null
done
end=$(date +%s.%N)
python3 -c "print(f'ingest: 20000 records in {$end-$start:.2f} s = {20000/($end-$start):.0f} records/s (POST /records, batches of 1000, 1 client)')"

# Every level for the whole week, then wait until nothing is pending.
curl -sf -X POST "$BASE/backfill" > /dev/null
for _ in $(seq 600); do
    left=$(curl -sf "$BASE/backfill" | python3 -c "import json,sys; print(sum(1 for j in json.load(sys.stdin)['data'] if j['status'] in ('pending','running')))")
    [ "$left" = 0 ] && break
    sleep 1
done
S=$(date -u -d '-7 days' +%Y-%m-%dT%H:00:00Z)
E=$(date -u +%Y-%m-%dT%H:00:00Z)
URL="$BASE/hourly?scope_type=endpoint&scope_value=endpoint-3&start_time=$S&end_time=$E"
rows=$(curl -sf "$URL" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['data']))")
echo "read: GET /hourly one endpoint, 7 days ($rows rows)"
wrk -t1 -c1 -d10s --latency "$URL" | grep -E "Requests/sec|50%|99%"
