#!/usr/bin/env bash
# The whole test suite in one command, on a fresh machine or a developer's:
#
#   scripts/test.sh                # everything (what .ci/run runs)
#   scripts/test.sh --no-lint      # skip rustfmt and clippy
#   scripts/test.sh -- FILTER ...  # extra arguments for `cargo test`
#
# TEST_TIMEOUT_SECS (default 2700) bounds the `cargo test` run.
#
# Steps:
#   1. services: MariaDB and Redis on 127.0.0.1 (installed with apt-get and
#      started when missing; see scripts/ensure-services.sh)
#   2. drop test databases left behind by crashed runs
#   3. cargo fmt --all -- --check
#   4. cargo clippy --workspace --all-targets -- -D warnings
#   5. the domain crate (gpu-usage-core) has no actix-web in its tree
#   6. cargo test --workspace --no-run, then cargo test --workspace
#      (tests pick SQLite or MariaDB themselves)
#   7. browser tests of the dashboard (scripts/browser-tests.sh: installs
#      Debian's chromium and playwright-core from npm when missing)
#
# Every step runs even when an earlier one failed (except the tests when they
# do not build), a summary closes the output, and the exit status is non-zero
# when anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

LINT=1
CARGO_TEST_ARGS=()
TEST_TIMEOUT_SECS=${TEST_TIMEOUT_SECS:-2700}
while [ $# -gt 0 ]; do
    case $1 in
        --no-lint) LINT=0 ;;
        --)
            shift
            CARGO_TEST_ARGS=("$@")
            break
            ;;
        -h | --help)
            sed -n '2,22p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

FAILED=()
STEP=0
STEPS=7
STARTED=$SECONDS
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpu-usage-test.XXXXXX")
trap 'rm -rf "$LOG_DIR"' EXIT

section() {
    STEP=$((STEP + 1))
    STEP_STARTED=$SECONDS
    printf '\n==== [%d/%d] %s ====\n' "$STEP" "$STEPS" "$1"
}

pass() { printf -- '---- ok: %s (%ds)\n' "$1" "$((SECONDS - STEP_STARTED))"; }

fail() {
    printf -- '---- FAILED: %s (%ds)\n' "$1" "$((SECONDS - STEP_STARTED))"
    FAILED+=("$1")
}

# Runs a step's command; records the outcome under the step's name.
run_step() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

summary_and_exit() {
    local totals=$1
    printf '\n==== summary (%ds) ====\n' "$((SECONDS - STARTED))"
    if [ ${#FAILED[@]} -eq 0 ]; then
        echo "all steps passed"
    else
        printf 'failed step: %s\n' "${FAILED[@]}"
    fi
    # One plain closing line for whoever reads the totals.
    if [ -n "$totals" ]; then
        echo "$totals"
    fi
    if [ ${#FAILED[@]} -eq 0 ]; then
        exit 0
    fi
    exit 1
}

# ---------------------------------------------------------------------------
section "services: MariaDB and Redis"
# shellcheck source=scripts/ensure-services.sh
source "$ROOT/scripts/ensure-services.sh"
if ensure_services; then
    echo "GPU_USAGE_TEST_MYSQL_URL=$(printf '%s' "$GPU_USAGE_TEST_MYSQL_URL" | sed -E 's#(//[^:/@]+):[^@]*@#\1:***@#')"
    echo "GPU_USAGE_TEST_REDIS_URL=$GPU_USAGE_TEST_REDIS_URL"
    pass "services"
else
    fail "services"
    echo "the database tests cannot run without MariaDB; stopping" >&2
    summary_and_exit ""
fi

# ---------------------------------------------------------------------------
section "leftover test databases"
run_step "drop leftover test databases" drop_stale_test_databases

# ---------------------------------------------------------------------------
section "rustfmt"
if [ $LINT -eq 1 ]; then
    run_step "cargo fmt --check" cargo fmt --all -- --check
else
    echo "skipped (--no-lint)"
fi

# ---------------------------------------------------------------------------
section "clippy"
if [ $LINT -eq 1 ]; then
    run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
else
    echo "skipped (--no-lint)"
fi

# ---------------------------------------------------------------------------
section "the domain crate has no actix-web"
# `cargo tree -i X` fails with "did not match any packages" when X is not in
# the selected graph: that is the pass. Printing a tree means actix-web is a
# (transitive) normal dependency of gpu-usage-core.
# shellcheck disable=SC2317 # invoked through run_step
no_actix_in_domain() {
    local out err rc=0
    out=$(cargo tree -p gpu-usage-core -e normal -i actix-web 2>"$LOG_DIR/tree.err") || rc=$?
    err=$(cat "$LOG_DIR/tree.err")
    if [ "$rc" -eq 0 ]; then
        echo "actix-web IS in the dependency tree of gpu-usage-core:"
        echo "$out"
        return 1
    fi
    if ! grep -q "did not match any packages" <<<"$err"; then
        echo "cargo tree failed unexpectedly:"
        echo "$err"
        return 1
    fi
    echo "cargo tree -p gpu-usage-core -e normal -i actix-web: not in the tree"
    local http
    http=$(cargo tree -p gpu-usage-core -e normal --prefix none 2>/dev/null |
        grep -E '^(actix-[a-z-]+|awc|axum|hyper|reqwest|warp|tower-http) v' | sort -u || true)
    if [ -n "$http" ]; then
        echo "HTTP crates in the tree of gpu-usage-core:"
        echo "$http"
        return 1
    fi
    echo "no HTTP server or client crate in the tree of gpu-usage-core"
}
run_step "no actix-web in gpu-usage-core" no_actix_in_domain

# ---------------------------------------------------------------------------
section "tests (SQLite and MariaDB)"
TOTALS=""
if cargo test --workspace --no-run; then
    # Keep cargo's own output (its "test result:" lines) and add them up.
    # A hung test must not eat CI's whole budget: stop the suite (timeout
    # signals its whole process group, test binaries included) after
    # TEST_TIMEOUT_SECS.
    set +e
    timeout --kill-after=30s "$TEST_TIMEOUT_SECS" \
        cargo test --workspace "${CARGO_TEST_ARGS[@]}" 2>&1 | tee "$LOG_DIR/test.log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "cargo test did not finish within ${TEST_TIMEOUT_SECS}s (a test hangs?)"
    fi
    TOTALS=$(awk '
        /^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i) ~ /^passed/) p += $(i - 1)
                if ($(i) ~ /^failed/) f += $(i - 1)
                if ($(i) ~ /^ignored/) s += $(i - 1)
            }
            n++
        }
        END { if (n) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }
    ' "$LOG_DIR/test.log")
    if [ "$rc" -eq 0 ]; then pass "cargo test"; else fail "cargo test"; fi
else
    fail "cargo test --no-run (the tests do not build)"
fi

# ---------------------------------------------------------------------------
section "browser tests (dashboard, headless Chromium)"
run_step "browser tests" "$ROOT/scripts/browser-tests.sh"

summary_and_exit "$TOTALS"
