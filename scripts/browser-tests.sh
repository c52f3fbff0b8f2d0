#!/usr/bin/env bash
# Browser tests of the built-in dashboard (tests/browser/run.mjs): the real
# gpu-usage binary on fresh SQLite files, headless Debian Chromium driven by
# playwright-core. Sets up what is missing on a fresh machine:
#
#   - Chromium: Debian's `chromium` package (apt-get, as root or via sudo)
#     when $CHROMIUM (default /usr/bin/chromium) is missing;
#   - tests/browser/node_modules: `npm ci` when missing (playwright-core
#     only; it downloads no browser);
#   - the binary: `cargo build -p gpu-usage` (a no-op when up to date; skip
#     with --no-build, then GPU_USAGE_BIN must exist).
#
#   scripts/browser-tests.sh [--no-build]
#
# Environment: GPU_USAGE_BIN (default $CARGO_TARGET_DIR or ./target, then
# debug/gpu-usage), CHROMIUM, BROWSER_TESTS_TIMEOUT_SECS (default 600).
# Screenshots, server logs and the downloaded CSV go to
# target/browser-artifacts/. Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

BUILD=1
for arg in "$@"; do
    case $arg in
        --no-build) BUILD=0 ;;
        -h | --help)
            sed -n '2,19p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

log() { printf '[browser-tests] %s\n' "$*"; }
die() {
    printf '[browser-tests] ERROR: %s\n' "$*" >&2
    exit 1
}

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export GPU_USAGE_BIN=${GPU_USAGE_BIN:-$TARGET_DIR/debug/gpu-usage}
export BROWSER_ARTIFACTS=${BROWSER_ARTIFACTS:-$ROOT/target/browser-artifacts}
TIMEOUT=${BROWSER_TESTS_TIMEOUT_SECS:-600}

# 1. Chromium
if [ ! -x "$CHROMIUM" ]; then
    log "installing Debian's chromium (no $CHROMIUM)"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "$CHROMIUM is missing and this is not root: apt-get install chromium"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    [ -x "$CHROMIUM" ] || die "chromium installed, but $CHROMIUM is still missing"
fi

# 2. Node and playwright-core
command -v node >/dev/null || die "node is missing (Node 20 or later)"
command -v npm >/dev/null || die "npm is missing"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    log "npm ci in tests/browser"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. The server binary. `cargo build` is a no-op when it is up to date, and it
# also puts back the binary when another checkout sharing CARGO_TARGET_DIR
# built its own over it. The tests run a private copy, so a build elsewhere
# cannot swap it mid-run.
if [ "$BUILD" = 1 ]; then
    log "cargo build -p gpu-usage"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build -p gpu-usage
fi
[ -x "$GPU_USAGE_BIN" ] || die "no server binary at $GPU_USAGE_BIN"
BIN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpu-usage-browser-bin.XXXXXX")
trap 'rm -rf "$BIN_DIR"' EXIT
cp "$GPU_USAGE_BIN" "$BIN_DIR/gpu-usage"
log "testing a copy of $GPU_USAGE_BIN"
export GPU_USAGE_BIN=$BIN_DIR/gpu-usage

# 4. The tests
mkdir -p "$BROWSER_ARTIFACTS"
log "browser $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null | head -n1))"
status=0
(cd tests/browser && timeout --kill-after=30 "$TIMEOUT" node --test-reporter=spec run.mjs) || status=$?
if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && log "timed out after ${TIMEOUT}s"
    log "FAILED (exit $status); screenshots and server logs in $BROWSER_ARTIFACTS"
    exit "$status"
fi
log "passed; screenshots in $BROWSER_ARTIFACTS"
