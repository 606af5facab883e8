#!/usr/bin/env bash
# Prints the directory of a Node.js 24+ `node` binary. Order: the `node` on PATH when it is 24 or
# later; the cached copy; else Node 24 LTS from the npm registry's platform package
# (node-<os>-<arch>@24, the official binary), unpacked once into the cache beside the Temporal CLI.
set -euo pipefail
MAJOR=24
CACHE="${INFERCP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/infer-cp}"
major_of() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null 2>&1 && [ "$(major_of node)" -ge "$MAJOR" ]; then
  dirname "$(command -v node)"; exit 0
fi
DIR="$CACHE/node-$MAJOR"
if [ -x "$DIR/bin/node" ] && [ "$(major_of "$DIR/bin/node")" -ge "$MAJOR" ]; then
  echo "$DIR/bin"; exit 0
fi
case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) echo "no Node $MAJOR package for $(uname -s); install Node $MAJOR+" >&2; exit 1 ;; esac
case "$(uname -m)" in x86_64|amd64) arch=x64 ;; aarch64|arm64) arch=arm64 ;; *) echo "no Node $MAJOR package for $(uname -m); install Node $MAJOR+" >&2; exit 1 ;; esac
if ! command -v npm >/dev/null 2>&1; then
  echo "Node $MAJOR+ is needed and npm is not installed to fetch it; install Node $MAJOR+" >&2; exit 1
fi
echo "Fetching Node $MAJOR (node-$os-$arch@$MAJOR from the npm registry) into $DIR (one time)..." >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "node-$os-$arch@$MAJOR" --silent --loglevel=error >/dev/null)
mkdir -p "$tmp/x"
tar -xzf "$tmp"/node-*.tgz -C "$tmp/x"
rm -rf "$DIR"
mkdir -p "$CACHE"
mv "$tmp/x/package" "$DIR"
echo "$DIR/bin"
