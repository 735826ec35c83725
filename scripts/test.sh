#!/usr/bin/env bash
# Installs what the test suite needs (idempotent: only what is missing, by package
# name from Debian, crates.io or PyPI) and runs every test of the workspace, then the
# Debian package's test, which installs and purges the package twindb on this machine.
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
# Point-in-time restore replays with mariadb-binlog; clone checks ports with mariadb-admin.
command -v mariadb-binlog >/dev/null || need_apt+=(mariadb-client)
command -v mariadb-admin >/dev/null || need_apt+=(mariadb-client)
command -v zstd >/dev/null || need_apt+=(zstd)
[ -e /usr/lib/galera/libgalera_smm.so ] || need_apt+=(galera-4)
# The ssh destination's tests run a real OpenSSH server and make keys with ssh-keygen.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
# openssl makes the RSA keys of the GCS service-account tests.
command -v openssl >/dev/null || need_apt+=(openssl)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Encryption and the compression programs (tests/tests/encryption.rs, modifiers.rs).
command -v gpg >/dev/null || need_apt+=(gnupg)
command -v gpgconf >/dev/null || need_apt+=(gpgconf)
command -v pigz >/dev/null || need_apt+=(pigz)
command -v bzip2 >/dev/null || need_apt+=(bzip2)
command -v lbzip2 >/dev/null || need_apt+=(lbzip2)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v tar >/dev/null || need_apt+=(tar)
command -v promtool >/dev/null || need_apt+=(prometheus)  # checks and unit-tests docs/prometheus-alerts.yml
# The Debian package test (scripts/package-test.sh): man -w, systemd-analyze verify,
# readelf to see that the packaged binaries are stripped.
command -v man >/dev/null || need_apt+=(man-db)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v readelf >/dev/null || need_apt+=(binutils)
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
# Builds the Debian package (packaging/build-deb.sh).
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi

# Object-store servers for the s3, gcs and az tests (tests/src/servers/).
# s3s-fs checks SigV4 signatures; 0.14.1 is the last release that builds with Rust 1.95.
if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  cargo install s3s-fs --version 0.14.1 --features binary --locked
fi
if ! command -v gcp-storage-emulator >/dev/null; then
  # Debian's own python refuses system-wide pip installs without this (PEP 668).
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q gcp-storage-emulator==2026.7.19
  command -v pyenv >/dev/null && pyenv rehash || true
fi
# Azurite, Azure Blob Storage's emulator, for the az tests. 3.36+ need Node 21; Debian
# 12's is 20.
if ! command -v azurite-blob >/dev/null; then
  command -v npm >/dev/null || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 nodejs npm; }
  $SUDO npm install -g --no-fund --no-audit azurite@3.35.0
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The integration tests run the real twindbd and twindbctl: nextest builds test targets
# only, so build the binaries first (a fresh target folder has none).
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast
# Builds the Debian package (one release build, as this user), installs it, checks it
# and purges it (as root).
deb="$(packaging/build-deb.sh | tail -n 1)"
$SUDO scripts/package-test.sh "$deb"
