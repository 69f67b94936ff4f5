#!/usr/bin/env bash
# Every check of the project, on a fresh Debian 12 machine with Rust: installs what is
# missing, then the dashboard build, formatting, clippy, cargo deny, cargo doc, the fuzz-target
# build and all tests
# (the dashboard's in a headless Chromium).
#
#   bash scripts/test.sh
#
# Environment: CROWDFLOW_TEST_POSTGRES=URL uses that PostgreSQL server (its user must be able
# to create databases) instead of starting one; CROWDFLOW_FUZZ_SECONDS=N also fuzzes each decoder for N seconds (needs
# cargo-fuzz, installed on demand); CROWDFLOW_SKIP_AARCH64=1 skips the Raspberry Pi build.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT"
started=$SECONDS
# A one-off build gains nothing from incremental state, which is most of a debug target's size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# stage TITLE: a stage's header, with the minutes and seconds since the start (where CI's
# time goes, read off its log).
stage() { say "$* [at $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s]"; }

stage "checking prerequisites"
# A full run needs about 3 GB under the target directory (2.5 GB measured); say so up front rather than fail
# deep inside a C build with "No space left on device".
free_kb=$(df -Pk "$(dirname "$CARGO_TARGET_DIR")" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
    say "warning: only $((free_kb / 1024)) MB free for $CARGO_TARGET_DIR; a full run needs about 3 GB"
fi
ensure_rust
ensure_python_datasketches
ensure_mosquitto
ensure_postgres
ensure_tshark
ensure_chromium
ensure_deploy_checkers
ensure_cargo_deny
build_dashboard

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "cargo deny check (licences, bans, sources; deny.toml)"
"$CARGO_DENY" check licenses bans sources

stage "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

stage "fuzz targets build"
cargo build --locked -p crowdflow-contract-fuzz -p crowdflow-agent-fuzz -p crowdflow-aggregator-fuzz

stage "cargo test"
# The scenarios in tests/ run the binaries: build them all first (cargo test alone builds a
# package's binary only for that package's own integration tests).
cargo build --workspace --bins --locked
cargo test --workspace --locked --exclude crowdflow-tests
# The whole-system scenarios mostly wait (for windows to close, sensors to go silent,
# restarts): four at a time on two cores halves their wall time (667 s -> 357 s measured)
# with the same results.
cargo test --locked -p crowdflow-tests -- --test-threads 4

stage "dashboard end-to-end tests (headless Chromium; screenshots in target/dashboard-e2e)"
(cd dashboard && CROWDFLOW_AGGREGATOR="$CARGO_TARGET_DIR/debug/crowdflow-aggregator" CROWDFLOW_DEMO="$CARGO_TARGET_DIR/debug/crowdflow-demo" npm test --silent)

stage "API property tests (schemathesis)"
bash scripts/schemathesis.sh

if [ -z "${CROWDFLOW_SKIP_AARCH64:-}" ]; then
    stage "aarch64 agent build, checked under qemu"
    bash scripts/aarch64.sh
    stage "Debian packages of the agent (amd64, arm64), checked"
    bash scripts/package.sh
fi

if [ -n "${CROWDFLOW_FUZZ_SECONDS:-}" ]; then
    bash scripts/fuzz.sh "$CROWDFLOW_FUZZ_SECONDS"
fi

say "all checks passed in $((SECONDS - started)) s; $CARGO_TARGET_DIR holds $(du -sh "$CARGO_TARGET_DIR" | cut -f1)"
