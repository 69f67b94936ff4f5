#!/usr/bin/env bash
# Fuzzes every decoder for N seconds each (default 60) with cargo-fuzz and libFuzzer.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# Seed corpora: the contract's golden fixtures, and small real captures for the agent.
# cargo-fuzz wants nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1 enables them for
# this build only. A crash leaves its input under <crate>/fuzz/artifacts/: fix it, then add
# the input to that crate's test fixtures so it stays fixed.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
seconds=${1:-60}

ensure_rust
command -v cargo-fuzz >/dev/null || { say "installing cargo-fuzz"; cargo install --locked cargo-fuzz; }

# fuzz CRATE_DIR TARGET SEED_FILE...
fuzz() {
    local crate=$1 target=$2; shift 2
    local corpus="$CARGO_TARGET_DIR/fuzz-corpus/$target"
    mkdir -p "$corpus"
    cp "$@" "$corpus/"
    say "fuzzing $target for $seconds s"
    set +e
    (cd "$ROOT/$crate" && RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz \
        --target-dir "$CARGO_TARGET_DIR/fuzz" "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048) > "$CARGO_TARGET_DIR/fuzz-$target.log" 2>&1
    local status=$?
    set -e
    grep -m 20 -E '^Done|panicked|SUMMARY|Failing input|crash-' "$CARGO_TARGET_DIR/fuzz-$target.log" || true
    [ "$status" -eq 0 ] || die "fuzz target $target failed; full log: $CARGO_TARGET_DIR/fuzz-$target.log"
}

fixtures="$ROOT/contract/tests/fixtures"
captures="$ROOT/sensor-agent/tests/data/captures"
fuzz contract envelope "$fixtures"/*.json "$fixtures"/*.bin "$fixtures"/fuzz/*
fuzz contract control_messages "$fixtures"/*.json
fuzz sensor-agent capture_file "$captures"/aircrack-ng/test1.pcap "$captures"/crackle/le_secure_connections.pcapng \
    "$captures"/hackrf-ble-boston/take_3_adv39_2_promising_src.pcap "$captures"/tcpdump-tests/ieee802.11_exthdr.pcap
fuzz sensor-agent frame "$captures"/tcpdump-tests/ieee802.11_meshid.pcap
fuzz sensor-agent agent_config "$ROOT"/deploy/agent/agent.example.toml
fuzz aggregator aggregator_config "$ROOT"/deploy/aggregator/aggregator.example.toml
fuzz aggregator ingest "$fixtures"/*.json
