#!/usr/bin/env bash
# Builds the Debian package of twindb: target/debian/twindb_VERSION-1_ARCH.deb.
#
# One release build of twindbd and twindbctl; then the generated files the package
# ships go to target/release/packaging/: the man pages (twindbd --man, twindbctl man
# ...: made from the clap definitions and docs/config.md), the shell completions
# (twindbctl completions SHELL), the unit with ExecStart=/usr/bin/twindbd, and the
# tmpfiles snippet under its installed name. cargo-deb then packs them with stripped
# binaries, as daemon/Cargo.toml's [package.metadata.deb] lists.
#
# Usage: packaging/build-deb.sh [CARGO-DEB OPTIONS]
#   e.g. --separate-debug-symbols (symbols in /usr/lib/debug/.build-id/ of the same
#   package) or --dbgsym (a second package, twindb-dbgsym_*.ddeb, with the symbols).
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi

target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p twindb -p twindbctl

out="$target/release/packaging"
rm -rf "$out"
mkdir -p "$out"
"$target/release/twindbd" --man >"$out/twindbd.8"
"$target/release/twindbctl" man twindbctl >"$out/twindbctl.1"
"$target/release/twindbctl" man twindb.toml >"$out/twindb.toml.5"
"$target/release/twindbctl" completions bash >"$out/twindbctl.bash"
"$target/release/twindbctl" completions zsh >"$out/_twindbctl"
"$target/release/twindbctl" completions fish >"$out/twindbctl.fish"
# Debian policy: man pages gzipped (cargo-deb compresses only files from the source tree).
gzip -9n "$out/twindbd.8" "$out/twindbctl.1" "$out/twindb.toml.5"
# systemd/twindbd.service serves installs by hand into /usr/local/bin; the package's
# binary is in /usr/bin.
sed 's|^ExecStart=/usr/local/bin/twindbd |ExecStart=/usr/bin/twindbd |' \
  systemd/twindbd.service >"$out/twindbd.service"
if ! grep -q '^ExecStart=/usr/bin/twindbd ' "$out/twindbd.service"; then
  echo "build-deb: systemd/twindbd.service has no ExecStart=/usr/local/bin/twindbd line to adjust" >&2
  exit 1
fi
# cargo-deb names the tmpfiles snippet in the postinst by its source file's name.
cp systemd/twindb.tmpfiles.conf "$out/twindb.conf"

# The release profile keeps line tables (backtraces with file:line), so cargo-deb would
# keep them too: strip, unless the symbols go to a .debug file or a dbgsym package.
strip=(--strip)
for arg in "$@"; do
  case "$arg" in --dbgsym | --separate-debug-symbols) strip=() ;; esac
done
cargo deb -p twindb --no-build "${strip[@]}" "$@" | tail -n 1
