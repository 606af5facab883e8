#!/usr/bin/env bash
# One entry for the two quick-start commands: `npm start` (up) and `npm test` (test).
# Installs what is missing (node modules, the Temporal CLI), generates the Prisma
# client, builds, then runs the stack or the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Node 24 LTS runs everything (npm and npx included); an older system Node is bypassed, said once.
ensure_node() {
  local dir
  dir="$(bash scripts/node.sh)"
  if [ "$(command -v node 2>/dev/null || true)" != "$dir/node" ]; then
    step "using Node $("$dir/node" --version) from $dir (the system's is $(node --version 2>/dev/null || echo 'absent'))"
    export PATH="$dir:$PATH"
  fi
}

ensure_node_modules() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    step "installing node modules"
    # Not `npm ci`: npm 11 writes lockfiles without other platforms' optional packages and then
    # refuses them in `npm ci`. `npm install --no-save` installs the locked versions all the same.
    npm install --no-save --no-audit --no-fund --loglevel=error
  fi
}

build() {
  step "generating the Prisma client"
  node scripts/prisma.js generate >/dev/null
  step "compiling TypeScript and bundling workflows"
  npx tsc -p tsconfig.build.json
  node dist/src/temporal/bundle.js
  step "building the console (web/ -> dist/web)"
  npx vite build --config web/vite.config.mts
}

# The browser tests drive Debian's chromium through playwright-core: installed once, quick when present.
ensure_chromium() {
  if [ -n "${CHROMIUM_PATH:-}" ] || command -v chromium >/dev/null 2>&1; then return; fi
  step "installing chromium for the browser tests (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }) >&2
  else
    sudo apt-get install -y -qq chromium >&2 || { echo "install chromium (apt-get install chromium) or set CHROMIUM_PATH" >&2; exit 1; }
  fi
}

ensure_temporal() {
  if [ -z "${TEMPORAL_ADDRESS:-}" ]; then
    step "checking the Temporal CLI"
    TEMPORAL_CLI_PATH="$(bash scripts/temporal-cli.sh)"
    export TEMPORAL_CLI_PATH
  fi
}

cmd="${1:-up}"; shift || true
ensure_node
case "$cmd" in
  up)
    ensure_node_modules; ensure_temporal; build
    exec node dist/src/cli/up.js "$@"
    ;;
  test)
    ensure_node_modules; ensure_temporal; ensure_chromium; build
    step "type-checking tests and benchmarks"
    npx tsc -p tsconfig.json --noEmit
    npx tsc -p web/tsconfig.json
    step "linting"
    npx eslint --max-warnings 0 .
    npx prettier --check . >/dev/null || { npx prettier --check . 2>&1 | tail -20; echo "format with: npm run format" >&2; exit 1; }
    step "running tests"
    # Mercurius loads an ES module with a dynamic import; jest needs vm modules for that.
    NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --no-warnings=ExperimentalWarning" exec npx jest --runInBand "$@"
    ;;
  build)
    ensure_node_modules; build
    ;;
  *)
    echo "usage: scripts/stack.sh up|test|build" >&2; exit 2
    ;;
esac
