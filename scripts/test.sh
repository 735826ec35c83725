#!/usr/bin/env bash
# Installs what the test suite needs (idempotent: only what is missing, by package
# name from Debian, crates.io or PyPI) and runs every test of the workspace.
# Usage: scripts/test.sh            (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
# runuser/useradd drive the socket permission test.
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v useradd >/dev/null || need_apt+=(passwd)
command -v cc >/dev/null || need_apt+=(gcc)
# A real MariaDB server with mariabackup, and zstd to decode binlog copies in tests.
[ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariabackup >/dev/null || need_apt+=(mariadb-backup)
command -v mariadb >/dev/null || need_apt+=(mariadb-client)
command -v zstd >/dev/null || need_apt+=(zstd)
[ -e /usr/lib/galera/libgalera_smm.so ] || need_apt+=(galera-4)
# The ssh destination's tests run a real OpenSSH server and make keys with ssh-keygen.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The integration tests run the real twindbd and twindbctl: nextest builds test targets
# only, so build the binaries first (a fresh target folder has none).
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast
