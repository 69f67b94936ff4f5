#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI) generates requests from the served OpenAPI
# document and checks every answer: no 5xx, status codes, content types and bodies as the
# document says. Runs against a real aggregator on free ports with an admin token.
#
#   bash scripts/schemathesis.sh [SECONDS]     (default 45; needs the debug build)
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT"
seconds="${1:-45}"

ensure_python_datasketches
command -v curl >/dev/null || apt_install curl
venv="$CARGO_TARGET_DIR/pyenv"
"$venv/bin/python" -c 'import schemathesis' 2>/dev/null \
    || { say "installing schemathesis (PyPI) into $venv"; "$venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5; }

binary="$CARGO_TARGET_DIR/debug/crowdflow-aggregator"
[ -x "$binary" ] || cargo build -q -p crowdflow-aggregator
work=$(mktemp -d /tmp/crowdflow-schemathesis.XXXXXX)
http=$(free_port)
mqtt=$(free_port)
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
hash=$(printf '%s\n' "$token" | "$binary" hash-token)
cat >"$work/aggregator.toml" <<TOML
[http]
listen = "127.0.0.1:$http"
[broker]
mode = "embedded"
listen = "127.0.0.1:$mqtt"
[storage]
kind = "sqlite"
path = "$work/crowdflow.db"
[[zones]]
id = "neude"
name = "Neude"
area_m2 = 12000.0
calibration = { wifi_random = 0.35, ble = 0.5 }
[[zones]]
id = "vredenburg"
name = "Vredenburg"
area_m2 = 8000.0
[[sensors]]
id = "neude-01"
zone = "neude"
[[tokens]]
name = "schemathesis"
role = "admin"
blake3 = "$hash"
TOML
"$binary" run --config "$work/aggregator.toml" >"$work/aggregator.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$http/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.2
done

say "schemathesis against http://127.0.0.1:$http/api/v1/openapi.json ($seconds s)"
# The live stream never ends; it is tested through the router and a real client instead.
"$venv/bin/schemathesis" run "http://127.0.0.1:$http/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --exclude-path /api/v1/stream \
    --max-time "$seconds" \
    --seed 1 \
    --warnings off \
    || { echo "aggregator log:"; tail -50 "$work/aggregator.log"; exit 1; }
