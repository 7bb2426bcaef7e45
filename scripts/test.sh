#!/usr/bin/env bash
# The project's test command (`npm test`). Builds the binaries when they are missing or stale, runs
# every bun test under test/ (unit, integration, e2e) with a sane podman environment, tees the output
# to a log, and ends with exactly one line `N passed, M failed` taken from bun's own summary.
#
# Usage: scripts/test.sh [bun test args...]   (default: ./test)
# Env:   CI=true             always rebuild (unless MCP_TEST_NO_BUILD=1: the caller just built)
#        MCP_TEST_TIMEOUT    seconds for the whole bun test run (default 1500)
#        MCP_TEST_LOG        log file (default .cache/test.log)
#        MCP_EXTRA_FAILED    failures found by the caller (lint, typecheck) added to M
#        MCP_SUMMARY_FILE    if set, write "N M K" there and leave printing the closing line to the caller
set -uo pipefail
cd "$(dirname "$0")/.."

BUN=./node_modules/.bin/bun
LOG=${MCP_TEST_LOG:-.cache/test.log}
extra_failed=${MCP_EXTRA_FAILED:-0}

summary() { # passed failed skipped
  local line="$1 passed, $2 failed"
  [ "$3" -gt 0 ] && line+=", $3 skipped"
  if [ -n "${MCP_SUMMARY_FILE:-}" ]; then
    echo "$1 $2 $3" >"$MCP_SUMMARY_FILE"
  else
    echo "$line"
  fi
}

# The README's test command must work on a fresh machine: install what is missing first (apt packages,
# node_modules). Cheap when everything is there; .ci/run has already done it and sets MCP_SKIP_DEPS.
if [ -z "${MCP_SKIP_DEPS:-}" ]; then
  bash scripts/ci-deps.sh >&2 || echo "test: scripts/ci-deps.sh failed; running what can run" >&2
fi

if [ ! -x "$BUN" ]; then
  echo "test: $BUN is missing: run scripts/ci-deps.sh (or npm ci) first" >&2
  summary 0 $((extra_failed + 1)) 0
  exit 1
fi

# Rebuild when a binary is missing or anything that goes into it is newer than the older binary.
needs_build() {
  [ "${MCP_TEST_NO_BUILD:-}" = 1 ] && return 1
  [ "${CI:-}" = true ] && return 0
  local oldest=""
  for f in dist/mcp-linux-x64 dist/mcp-linux-arm64; do
    [ -f "$f" ] || return 0
    if [ -z "$oldest" ] || [ "$f" -ot "$oldest" ]; then oldest=$f; fi
  done
  [ -n "$(find src scripts/build.ts package-lock.json tsconfig.json -newer "$oldest" -print -quit 2>/dev/null)" ]
}

if needs_build; then
  echo "test: building binaries"
  if ! "$BUN" scripts/build.ts; then
    # Keep going: unit tests still tell something; e2e tests will fail with a clear message.
    echo "test: BUILD FAILED (counted as one failure)" >&2
    extra_failed=$((extra_failed + 1))
  fi
fi

# Podman on these machines needs runc and no default ulimits; tests inherit this config.
tmp_root=$(mktemp -d "${TMPDIR:-/tmp}/mcp-test.XXXXXX")
trap 'rm -rf "$tmp_root"' EXIT
if [ -z "${CONTAINERS_CONF:-}" ]; then
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$tmp_root/containers.conf"
  export CONTAINERS_CONF="$tmp_root/containers.conf"
fi

# The reliability suite (test/reliability/) records cases/faults/data lost here; summarized below.
export MCP_RELIABILITY_LOG="$tmp_root/reliability.jsonl"

targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(./test)

mkdir -p "$(dirname "$LOG")"
# timeout bounds a hung run (a whole-run hang would otherwise eat the CI budget); killed => no summary.
timeout --kill-after=30 "${MCP_TEST_TIMEOUT:-1500}" "$BUN" test "${targets[@]}" 2>&1 | tee "$LOG"
bun_rc=${PIPESTATUS[0]}

# bun's closing block: " N pass", " N skip", " N todo", " N fail". Take the last occurrence of each
# so test output that happens to look similar earlier cannot win.
count() {
  sed 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -E "^ *[0-9]+ $1\$" | tail -n 1 | grep -oE '[0-9]+' || true
}
passed=$(count pass)
failed=$(count fail)
skip=$(count skip)
todo=$(count todo)
skipped=$((${skip:-0} + ${todo:-0}))

if [ -z "$passed" ] && [ -z "$failed" ]; then
  echo "test: bun produced no summary (exit $bun_rc): counted as a failure" >&2
  passed=0
  failed=1
fi
passed=${passed:-0}
failed=${failed:-0}
if [ "$bun_rc" -eq 124 ] || [ "$bun_rc" -eq 137 ]; then
  echo "test: bun test timed out after ${MCP_TEST_TIMEOUT:-1500}s" >&2
fi
# A non-zero bun exit with no failing test (error outside a test, timeout after the summary) is a failure.
if [ "$bun_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi
failed=$((failed + extra_failed))

# CI keeps only the tail of the output: repeat each failure with its error next to the summary.
"$BUN" scripts/failure-digest.ts "$LOG"
"$BUN" scripts/reliability-summary.ts "$MCP_RELIABILITY_LOG" | tee -a "$LOG"
echo "test: log in $LOG"
summary "$passed" "$failed" "$skipped"
[ "$failed" -eq 0 ] && [ "$bun_rc" -eq 0 ]
