#!/usr/bin/env bash
# Debian packages of the sensor agent for the Raspberry Pi (arm64) and x86-64 (amd64), built
# with dpkg-deb from the `dist` binaries (release, optimized across crates), then checked: control fields, every file with its
# owner and mode, the conffile, and the packaged binary run (arm64 under qemu) on the packaged
# example config. Installs nothing on this machine.
#
#   bash scripts/package.sh          # target/deb/crowdflow-agent_VERSION_{amd64,arm64}.deb
#
# The arm64 binary comes from scripts/aarch64.sh (Debian's cross toolchain); run that first.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$ROOT"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out="$CARGO_TARGET_DIR/deb"
mkdir -p "$out"

# build_deb ARCH BINARY: assembles and builds the package, prints its path.
build_deb() {
    local arch=$1 binary=$2 root
    root=$(mktemp -d)
    install -Dm0755 "$binary" "$root/usr/bin/crowdflow-agent"
    install -Dm0755 deploy/agent/crowdflow-monitor-mode "$root/usr/sbin/crowdflow-monitor-mode"
    install -Dm0644 deploy/agent/crowdflow-agent.service "$root/lib/systemd/system/crowdflow-agent.service"
    install -Dm0644 deploy/agent/crowdflow-monitor-mode@.service "$root/lib/systemd/system/crowdflow-monitor-mode@.service"
    install -Dm0644 deploy/agent/agent.example.toml "$root/etc/crowdflow/agent.toml"
    install -Dm0644 deploy/agent/agent.example.toml "$root/usr/share/doc/crowdflow-agent/agent.example.toml"
    install -Dm0644 docs/installing-a-sensor.md "$root/usr/share/doc/crowdflow-agent/installing-a-sensor.md"
    install -Dm0644 README.md "$root/usr/share/doc/crowdflow-agent/README.md"
    cat > "$root/usr/share/doc/crowdflow-agent/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: crowdflow
Source: https://example.invalid/crowdflow

Files: *
Copyright: crowdflow developers
License: EUPL-1.2
 European Union Public Licence v. 1.2: https://interoperable-europe.ec.europa.eu/collection/eupl/eupl-text-eupl-12
COPYRIGHT
    chmod 0644 "$root/usr/share/doc/crowdflow-agent/copyright"
    mkdir -p "$root/DEBIAN"
    cat > "$root/DEBIAN/control" <<CONTROL
Package: crowdflow-agent
Version: $version
Architecture: $arch
Maintainer: crowdflow developers <crowdflow@example.invalid>
Section: net
Priority: optional
Depends: libc6 (>= 2.31)
Recommends: iw
Installed-Size: $(du -sk "$root" | cut -f1)
Homepage: https://example.invalid/crowdflow
Description: privacy-preserving crowd counting sensor
 Listens to Wi-Fi probe requests and Bluetooth LE advertisements, hashes each
 device address in memory with a daily salt and publishes only HyperLogLog
 sketches over MQTT to a crowdflow aggregator. No address or hash is stored.
CONTROL
    echo /etc/crowdflow/agent.toml > "$root/DEBIAN/conffiles"
    cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
# The agent starts only once configured: edit /etc/crowdflow/agent.toml, then
#   systemctl enable --now crowdflow-agent
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
    cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
    chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
    local deb="$out/crowdflow-agent_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$root"
    echo "$deb"
}

# check_deb DEB ARCH MACHINE RUNNER...: the package's fields and files, and its binary run.
check_deb() {
    local deb=$1 arch=$2 machine=$3; shift 3
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || die "$deb: Architecture is not $arch"
    [ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || die "$deb: Version is not $version"
    local listing want
    listing=$(dpkg-deb -c "$deb")
    for want in "-rwxr-xr-x root/root .* ./usr/bin/crowdflow-agent" \
                "-rwxr-xr-x root/root .* ./usr/sbin/crowdflow-monitor-mode" \
                "-rw-r--r-- root/root .* ./lib/systemd/system/crowdflow-agent.service" \
                "-rw-r--r-- root/root .* ./lib/systemd/system/crowdflow-monitor-mode@.service" \
                "-rw-r--r-- root/root .* ./etc/crowdflow/agent.toml" \
                "-rw-r--r-- root/root .* ./usr/share/doc/crowdflow-agent/copyright"; do
        grep -Eq -- "^$want\$" <<<"$listing" || die "$deb lacks: $want"
    done
    # Nothing else writable or setuid, and no state shipped.
    ! grep -E '^.{5}w|^.{8}w|^.{3}[sS]|^.{6}[sS]| \./var/' <<<"$listing" \
        || die "$deb ships group/world-writable, setuid or state files"
    # No `producer | consumer` that may quit early: under pipefail, tar stopping at the archive's
    # end marker (or grep -q at its first match) kills the producer with SIGPIPE and fails the check.
    local dir header version_line member
    dir=$(mktemp -d)
    dpkg-deb --ctrl-tarfile "$deb" > "$dir/control.tar"
    member=$(grep -Ex '(\./)?conffiles' <<<"$(tar -tf "$dir/control.tar")") || die "$deb has no conffiles"
    [ "$(tar -xOf "$dir/control.tar" "$member")" = /etc/crowdflow/agent.toml ] \
        || die "$deb: agent.toml is not a conffile"
    dpkg-deb -x "$deb" "$dir/root"
    header=$(readelf -h "$dir/root/usr/bin/crowdflow-agent")
    grep -q "Machine: *$machine" <<<"$header" || die "$deb: the binary is not for $machine"
    version_line=$("$@" "$dir/root/usr/bin/crowdflow-agent" --version) \
        || die "$deb: the packaged binary does not run"
    [ "$version_line" = "crowdflow-agent $version" ] \
        || die "$deb: the packaged binary says '$version_line', not 'crowdflow-agent $version'"
    # a fresh install's config holds placeholders: validate must refuse it naming them, and
    # accept it once they are filled in (what docs/installing-a-sensor.md steps 1 and 2 say)
    local refused
    refused=$("$@" "$dir/root/usr/bin/crowdflow-agent" validate --config "$dir/root/etc/crowdflow/agent.toml" 2>&1) \
        && die "$deb: the packaged example config validates with its placeholders"
    grep -q 'broker.password.*"change-me" is the example config' <<<"$refused" \
        || die "$deb: validate does not name the placeholder password: $refused"
    sed -e 's/change-me/s3cret/' -e 's/crowdflow.example.org/broker.lan/' \
        -e 's|ed25519:REPLACE-WITH-THE-AGGREGATOR-KEY|ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=|' \
        "$dir/root/etc/crowdflow/agent.toml" > "$dir/filled.toml"
    "$@" "$dir/root/usr/bin/crowdflow-agent" validate --config "$dir/filled.toml" >/dev/null \
        || die "$deb: the packaged example config does not validate once filled in"
    rm -rf "$dir"
    echo "checked $deb ($(du -h "$deb" | cut -f1)): fields, $(wc -l <<<"$listing") entries, conffile, binary runs, refuses the example's placeholders and validates it filled in"
}

say "building the amd64 package"
cargo build --locked --profile dist -p crowdflow-agent
amd64=$(build_deb amd64 "$CARGO_TARGET_DIR/dist/crowdflow-agent")
check_deb "$amd64" amd64 "Advanced Micro Devices X86-64" env

arm="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/dist/crowdflow-agent"
if [ -x "$arm" ]; then
    say "building the arm64 package (Raspberry Pi)"
    arm64=$(build_deb arm64 "$arm")
    check_deb "$arm64" arm64 "AArch64" qemu-aarch64-static
else
    say "no aarch64 binary ($arm): run scripts/aarch64.sh for the arm64 package"
fi
