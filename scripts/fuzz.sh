#!/usr/bin/env bash
# Fuzzes every decoder for N seconds each (default 60) with cargo-fuzz and libFuzzer.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# The seed corpus is the golden fixtures. cargo-fuzz wants nightly flags; on a stable
# toolchain RUSTC_BOOTSTRAP=1 enables them for this build only.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT/contract"
seconds=${1:-60}

ensure_rust
command -v cargo-fuzz >/dev/null || { say "installing cargo-fuzz"; cargo install --locked cargo-fuzz; }

for target in envelope control_messages; do
    corpus="$CARGO_TARGET_DIR/fuzz-corpus/$target"
    mkdir -p "$corpus"
    cp tests/fixtures/*.json tests/fixtures/*.bin tests/fixtures/fuzz/* "$corpus/"
    say "fuzzing $target for $seconds s"
    set +e
    RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --target-dir "$CARGO_TARGET_DIR/fuzz" \
        "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        > "$CARGO_TARGET_DIR/fuzz-$target.log" 2>&1
    status=$?
    set -e
    grep -E '^Done|panicked|SUMMARY|Failing input|crash-' "$CARGO_TARGET_DIR/fuzz-$target.log" | head -n 20
    [ "$status" -eq 0 ] || die "fuzz target $target failed (full log: $CARGO_TARGET_DIR/fuzz-$target.log); add the input to contract/tests/fixtures/fuzz/ once fixed"
done
