#!/usr/bin/env bash
# Bad input, measured: runs schemathesis (every check) against the service's own
# /openapi.json, with the platform sandbox behind it, for a bounded time. Fails on any 5xx,
# any answer that breaks the document, and any schema-invalid request that is accepted.
#
# Usage: ci/api_fuzz.sh PATH/TO/order-service [SECONDS]
set -euo pipefail

binary=$1
seconds=${2:-90}
cd "$(dirname "$0")/.."

venv="${XDG_CACHE_HOME:-$HOME/.cache}/order-service-ci-fuzz-venv"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/order-service-fuzz.XXXXXX")
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket
for p in range(21000, 60000, 7):
    try:
        socks = [socket.socket() for _ in range(4)]
        for i, s in enumerate(socks): s.bind(("127.0.0.1", p + i))
        for s in socks: s.close()
        print(p); break
    except OSError:
        for s in socks: s.close()')
"$binary" dev --host 127.0.0.1 --port "$port" --data-dir "$work/data" \
  --stock SKU-001=1000000000 --stock SKU-002=1000000000 --stock SKU-003=1000000000 \
  > "$work/service.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
  sleep 0.1
done

# One worker: hypothesis' source introspection has raised internal errors with several.
if ! "$venv/bin/schemathesis" --config-file ci/schemathesis.toml run \
    "http://127.0.0.1:$port/openapi.json" --checks all --workers 1 --max-time "$seconds"; then
  echo "--- last lines of the service log" >&2
  tail -n 40 "$work/service.log" >&2
  # The log goes with the run's directory: say here what a slow answer did meanwhile.
  echo "--- answers that took a second or more, and warnings and errors" >&2
  grep -E 'latency=[0-9]{4,} ms|"level":"(WARN|ERROR)"| WARN | ERROR ' "$work/service.log" \
    | tail -n 40 >&2 || true
  exit 1
fi
