#!/usr/bin/env bash
# clients/js/scripts/check.sh: the JavaScript client's checks.
#   1. installs the pinned TypeScript into $HERALD_CACHE (default ~/.cache/herald) when it is
#      missing, outside the repository (nothing is added to clients/js);
#   2. type-checks the hand-written src/herald.d.ts: `tsc --noEmit` on test/types-check.ts
#      (no DOM or Node types) and on test/types-check-dom.ts (with the DOM library);
#   3. runs the unit tests with `node --test` (Node 18+). On Node 20/21 it adds
#      --experimental-websocket so test/socket.test.js has a real WebSocket client.
# It exits non-zero when any step fails.
set -euo pipefail

JS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERALD_CACHE=${HERALD_CACHE:-$HOME/.cache/herald}
TS_VERSION=5.9.3
TS_DIR=$HERALD_CACHE/typescript-$TS_VERSION
TS_PKG=$TS_DIR/node_modules/typescript

command -v node >/dev/null || { echo "check.sh: node is not installed" >&2; exit 1; }

if [[ -f $TS_PKG/package.json ]] && grep -qF "\"version\": \"$TS_VERSION\"" "$TS_PKG/package.json"; then
	echo "==> typescript $TS_VERSION (cached: $TS_PKG)"
else
	echo "==> installing typescript $TS_VERSION into $TS_DIR"
	npm install --prefix "$TS_DIR" --no-audit --no-fund --loglevel=error "typescript@$TS_VERSION"
	[[ -f $TS_PKG/package.json ]] || { echo "check.sh: npm did not install typescript" >&2; exit 1; }
fi

cd "$JS_ROOT"
echo "==> tsc: src/herald.d.ts through test/types-check.ts"
node "$TS_PKG/bin/tsc" -p tsconfig.json
echo "==> tsc: src/herald.d.ts in a DOM program (test/types-check-dom.ts)"
node "$TS_PKG/bin/tsc" -p tsconfig.dom.json

NODE_FLAGS=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)'; then
	NODE_FLAGS+=(--experimental-websocket)
fi
echo "==> node ${NODE_FLAGS[*]} --test test/*.test.js"
node "${NODE_FLAGS[@]}" --test test/*.test.js
