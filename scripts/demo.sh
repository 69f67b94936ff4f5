#!/usr/bin/env bash
# The whole crowdflow system on this machine: the aggregator with its embedded MQTT broker
# and SQLite, simulated sensors counting Koningsdag in Utrecht live from 14:00 in real time
# (the morning written into history and calibrated on clicker counts first), the HTTP API
# and the dashboard. Prints the URLs; Ctrl-C stops everything.
#
#   bash scripts/demo.sh [--http ADDR:PORT] [--mqtt-port PORT] [--data DIR] [--start HH:MM] [--speed N]
#
# Defaults: http 127.0.0.1:8080, MQTT 127.0.0.1:11883, data in target/demo.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT"
ensure_rust
build_dashboard
say "building crowdflow (release; the first build takes several minutes)"
cargo build --release --locked -p crowdflow-demo -p crowdflow-agent -p crowdflow-aggregator
args=("$@")
if [[ " ${args[*]} " != *" --data "* ]]; then
    args+=(--data "$CARGO_TARGET_DIR/demo")
fi
exec "$CARGO_TARGET_DIR/release/crowdflow-demo" "${args[@]}"
