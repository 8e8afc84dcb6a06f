#!/usr/bin/env bash
# The GraphQL-over-HTTP spec's reference audit (graphql-http's serverAudits, pinned)
# against a real `tally serve` with a bearer token, on a fresh SQLite database. Node and
# npm are needed here only; the packages go to a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

GRAPHQL_HTTP="graphql-http@1.23.1"
GRAPHQL="graphql@16.15.0"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$GRAPHQL_HTTP" "$GRAPHQL")
cp .ci/graphql-http-audit.mjs "$work/"

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TALLY_DATABASE_URL="sqlite:///$work/audit.db" TALLY_SECRET_KEY=audit TALLY_WEBHOOK_SECRET=audit
token=$(.venv/bin/tally create-account --name Audit --admin-name A --admin-email a@audit.example --json 2>/dev/null \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["token"])')
.venv/bin/tally serve --port "$port" --no-migrate >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
node "$work/graphql-http-audit.mjs" "http://127.0.0.1:$port/graphql" "$token"
