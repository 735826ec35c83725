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
# Encryption and the compression programs (tests/tests/encryption.rs, modifiers.rs).
command -v gpg >/dev/null || need_apt+=(gnupg)
command -v gpgconf >/dev/null || need_apt+=(gpgconf)
command -v pigz >/dev/null || need_apt+=(pigz)
command -v bzip2 >/dev/null || need_apt+=(bzip2)
command -v lbzip2 >/dev/null || need_apt+=(lbzip2)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v tar >/dev/null || need_apt+=(tar)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
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
cargo nextest run --workspace --no-fail-fast
