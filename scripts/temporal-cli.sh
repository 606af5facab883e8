#!/usr/bin/env bash
# Prints the path of a Temporal CLI, building it from Go modules the first time.
# Order: $TEMPORAL_CLI_PATH, `temporal` on PATH, the cached build, a new build.
set -euo pipefail
VERSION=v1.5.1  # later tags carry a replace directive that `go install` refuses
CACHE="${INFERCP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/infer-cp}"
if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then
  [ -x "$TEMPORAL_CLI_PATH" ] || { echo "TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable file" >&2; exit 1; }
  echo "$TEMPORAL_CLI_PATH"; exit 0
fi
if command -v temporal >/dev/null 2>&1; then command -v temporal; exit 0; fi
BIN="$CACHE/bin/temporal"
if [ ! -x "$BIN" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "The Temporal CLI is missing and Go is not installed to build it." >&2
    echo "Install Go, put 'temporal' on PATH, set TEMPORAL_CLI_PATH, or point TEMPORAL_ADDRESS at a running cluster." >&2
    exit 1
  fi
  mkdir -p "$CACHE/bin"
  echo "Building the Temporal CLI $VERSION into $CACHE/bin (one time; a few minutes)..." >&2
  start=$(date +%s)
  GOBIN="$CACHE/bin" go install "github.com/temporalio/cli/cmd/temporal@$VERSION" >"$CACHE/temporal-build.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    kill -0 "$pid" 2>/dev/null && echo "  ...still building the Temporal CLI ($(( $(date +%s) - start )) s, $(grep -c downloading "$CACHE/temporal-build.log" || true) modules fetched)" >&2
  done
  if ! wait "$pid"; then
    echo "Building the Temporal CLI failed; see $CACHE/temporal-build.log" >&2
    tail -20 "$CACHE/temporal-build.log" >&2
    exit 1
  fi
  echo "Temporal CLI built in $(( $(date +%s) - start )) s." >&2
fi
echo "$BIN"
