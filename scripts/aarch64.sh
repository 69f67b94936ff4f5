#!/usr/bin/env bash
# Builds crowdflow-agent for aarch64 (Raspberry Pi 3/4/5 and Zero 2 W on 64-bit Raspberry Pi
# OS) and checks under qemu that `replay --json` counts the same as the host build.
#
#   bash scripts/aarch64.sh        # binary: target/aarch64-unknown-linux-gnu/dist/crowdflow-agent
#
# Both builds use the `dist` profile, as shipped (Cargo.toml).
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT"

ensure_rust
ensure_arm64_toolchain
# In CI the aarch64 build's warnings fail the run: code behind cfg(target_arch) (the keyed
# hash's x86 kernels, the sockets) compiles differently here than on the host.
if [ -n "${CI:-}" ]; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-D warnings"
fi
say "building crowdflow-agent for aarch64 (cargo +debian, $(rustc +debian --version))"
cargo +debian build --locked --profile dist --target aarch64-unknown-linux-gnu -p crowdflow-agent
arm="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/dist/crowdflow-agent"
say "building crowdflow-agent for the host"
cargo build --locked --profile dist -p crowdflow-agent
host="$CARGO_TARGET_DIR/dist/crowdflow-agent"

# Counted frames and skip reasons must be identical; distinct counts too (these captures are
# small enough for the sketch's exact modes, whatever the salt).
captures=sensor-agent/tests/data/captures
summary='import json,sys; r=json.load(sys.stdin); print(json.dumps([r["frames"], r["counted"], r["skipped"], {k: round(v["estimate"]) for k, v in r["distinct"].items()}], sort_keys=True))'
for f in aircrack-ng/test1.pcap probing-patterns/iPhone11-B_anonymized.pcap crackle/le_secure_connections.pcapng \
         hackrf-ble-boston/take_3_ble_all_adv_w_scan.pcap tcpdump-tests/ieee802.11_exthdr.pcap; do
    want=$("$host" replay --json --pcap "$captures/$f" | python3 -c "$summary")
    got=$(timeout -s KILL 120 qemu-aarch64-static "$arm" replay --json --pcap "$captures/$f" | python3 -c "$summary")
    [ "$want" = "$got" ] || die "aarch64 and host disagree on $f: $got vs $want"
    echo "same counts on aarch64 and x86-64: $f $got"
done
say "aarch64 agent OK: $arm ($(du -h "$arm" | cut -f1))"
