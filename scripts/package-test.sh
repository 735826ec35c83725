#!/usr/bin/env bash
# Builds the Debian package (packaging/build-deb.sh), installs it on this machine and
# checks it as an admin would use it, then purges it:
#   contents and control fields; install with dpkg -i; the unit passes
#   systemd-analyze verify and is not enabled; the shipped config passes
#   --check-config; --help, the man pages (man -w, rendered without groff warnings)
#   and the bash completion; a files backup + restore round trip with the installed
#   /usr/bin/twindbd and /usr/bin/twindbctl, every file compared by sha256, mode and
#   link target; reinstalling with --force-confold keeps a changed conffile; remove
#   keeps the conffile and the state; purge leaves nothing behind.
#
# Usage: scripts/package-test.sh [DEB]   (as root, on a machine where the package may
# be installed and purged: CI or a throwaway VM. It refuses to run where twindb is
# installed or /etc/twindb or /var/lib/twindb exist, so as not to purge an admin's.)
# Without DEB it builds the package first. scripts/test.sh runs it. Any failed check stops it with "package-test: FAIL: ...";
# the package is purged at the end in every case.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "== package-test: $*"; }
fail() {
  echo "package-test: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the package"
if dpkg-query -W -f='${Status}' twindb 2>/dev/null | grep -qv 'not-installed'; then
  fail "the package twindb is installed here; this test would purge it"
fi
for d in /etc/twindb /var/lib/twindb; do
  [ ! -e "$d" ] || fail "$d exists; this test would remove it"
done

need_apt=()
command -v man >/dev/null || need_apt+=(man-db)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v readelf >/dev/null || need_apt+=(binutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need_apt[@]}"
fi

if [ $# -gt 0 ]; then
  deb="$1"
else
  step "build"
  deb="$(packaging/build-deb.sh | tail -n 1)"
fi
[ -f "$deb" ] || fail "no package at '$deb'"
echo "$deb: $(du -h "$deb" | cut -f1)"

work="$(mktemp -d /tmp/twindb-package-test.XXXXXX)"
daemon_pid=""
finish() {
  local rc=$?
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
  if dpkg-query -W twindb >/dev/null 2>&1 && ! dpkg --purge twindb >"$work/purge.log" 2>&1; then
    cat "$work/purge.log" >&2
    echo "package-test: FAIL: dpkg --purge twindb failed" >&2
    rc=1
  fi
  rm -rf "$work"
  if [ "$rc" = 0 ]; then
    echo "== package-test: all checks passed"
  else
    echo "== package-test: FAILED (exit $rc)" >&2
  fi
  exit "$rc"
}
trap finish EXIT

step "contents and control fields"
info="$(dpkg-deb --info "$deb")"
for want in 'Package: twindb' 'Depends: .*libc6' 'Recommends: .*mariadb-backup' \
  'Recommends: .*gnupg' 'Section: admin'; do
  grep -q "^ *$want" <<<"$info" || fail "control has no '$want':"$'\n'"$info"
done
contents="$(dpkg-deb --contents "$deb")"
for want in '^-rwxr-xr-x .* \./usr/bin/twindbd$' '^-rwxr-xr-x .* \./usr/bin/twindbctl$' \
  '^-rw------- .* \./etc/twindb/twindb\.toml$' \
  ' \./usr/lib/systemd/system/twindbd\.service$' ' \./usr/lib/tmpfiles\.d/twindb\.conf$' \
  ' \./usr/share/man/man8/twindbd\.8\.gz$' ' \./usr/share/man/man1/twindbctl\.1\.gz$' \
  ' \./usr/share/man/man5/twindb\.toml\.5\.gz$' \
  ' \./usr/share/bash-completion/completions/twindbctl$' \
  ' \./usr/share/zsh/vendor-completions/_twindbctl$' \
  ' \./usr/share/fish/vendor_completions\.d/twindbctl\.fish$'; do
  grep -Eq -- "$want" <<<"$contents" || fail "the package has no file matching '$want'"
done
dpkg-deb --info "$deb" conffiles | grep -qx '/etc/twindb/twindb.toml' ||
  fail "/etc/twindb/twindb.toml is not a conffile"

step "install (dpkg -i)"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"
[ "$(stat -c %a /etc/twindb/twindb.toml)" = 600 ] || fail "the config is not 0600"
for bin in /usr/bin/twindbd /usr/bin/twindbctl; do
  # (.debug_gdb_scripts, rustc's hint for gdb's pretty printers, survives strip.)
  if readelf -S "$bin" | grep -Eq '\.(debug_info|debug_line|symtab) '; then fail "$bin is not stripped"; fi
done
echo "installed sizes: $(du -h /usr/bin/twindbd /usr/bin/twindbctl | tr '\n\t' '  ')"
[ ! -e /etc/systemd/system/multi-user.target.wants/twindbd.service ] ||
  fail "the service was enabled by the install; only the admin enables it"

step "systemd-analyze verify"
grep -qx 'ExecStart=/usr/bin/twindbd --config /etc/twindb/twindb.toml' \
  /usr/lib/systemd/system/twindbd.service || fail "the unit does not start /usr/bin/twindbd"
if ! out="$(systemd-analyze verify /usr/lib/systemd/system/twindbd.service 2>&1)"; then
  fail "systemd-analyze verify rejects the unit:"$'\n'"$out"
fi
# Anything it prints about our unit is a problem even when it exits 0.
if grep -i 'twindb' <<<"$out"; then fail "systemd-analyze verify warns about the unit"; fi
# The tmpfiles snippet, applied under a scratch root.
systemd-tmpfiles --create --root="$work/root" /usr/lib/tmpfiles.d/twindb.conf
[ "$(stat -c %a "$work/root/run/twindb")" = 755 ] || fail "tmpfiles did not make /run/twindb 0755"

step "the shipped config"
twindbd --check-config --config /etc/twindb/twindb.toml

step "--help, man pages, completions"
twindbctl --help | grep -q 'restore' || fail "twindbctl --help lists no restore"
twindbd --help | grep -q -- '--check-config' || fail "twindbd --help lists no --check-config"
for page in 1:twindbctl 8:twindbd 5:twindb.toml; do
  man -w "${page%%:*}" "${page#*:}" || fail "man -w ${page#*:}: no page"
  # groff's warnings (bad requests, escapes) go to stderr.
  warnings="$(MANWIDTH=80 man --warnings -E UTF-8 "${page%%:*}" "${page#*:}" 2>&1 >"$work/page.txt")"
  [ -z "$warnings" ] || fail "man ${page#*:} renders with warnings:"$'\n'"$warnings"
  [ "$(wc -l <"$work/page.txt")" -gt 20 ] || fail "man ${page#*:} is nearly empty"
done
MANWIDTH=80 man 1 twindbctl | grep -q 'twindbctl restore file' || fail "twindbctl(1) lacks restore file"
MANWIDTH=80 man 5 twindb.toml | grep -q 'backup_destination' || fail "twindb.toml(5) lacks keys"
# The completion loads in bash and completes a command name.
completed="$(bash -c 'source /usr/share/bash-completion/completions/twindbctl
  COMP_WORDS=(twindbctl res); COMP_CWORD=1; COMP_LINE="twindbctl res"; COMP_POINT=13
  _twindbctl twindbctl res twindbctl; printf "%s\n" "${COMPREPLY[@]}"')"
grep -qx restore <<<"$completed" || fail "bash completion of 'twindbctl res' gave: $completed"
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_twindbctl; fi
if command -v fish >/dev/null; then fish -n /usr/share/fish/vendor_completions.d/twindbctl.fish; fi

step "files backup and restore with the installed binaries"
src="$work/src"
mkdir -p "$src/sub/deeper" "$src/empty dir"
printf 'hello\n' >"$src/a.txt"
: >"$src/empty"
head -c 3000000 /dev/urandom >"$src/sub/random.bin"
seq 1 200000 >"$src/sub/deeper/numbers with spaces.txt"
printf 'ü\n' >"$src/sub/ünïcödé"
chmod 0640 "$src/a.txt"
chmod 0700 "$src/sub/deeper"
ln -s ../a.txt "$src/sub/link"
sock="$work/twindbd.sock"
cat >"$work/twindb.toml" <<EOF
[daemon]
socket = "$sock"
# The package's state_dir, so that purge below is seen to remove it.
state_dir = "/var/lib/twindb"
run_at_start = false

[source]
backup_dirs = ["$src"]

[destination]
backup_destination = "local"

[local]
path = "$work/dest"

# Only the daily run type, by hand: no scheduled run fires during the test.
[intervals]
run_hourly = false
run_daily = true
run_weekly = false
run_monthly = false
run_yearly = false
EOF
twindbd --check-config --config "$work/twindb.toml"
/usr/bin/twindbd --config "$work/twindb.toml" 2>"$work/twindbd.log" &
daemon_pid=$!
for _ in $(seq 100); do
  twindbctl --socket "$sock" status >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "twindbd exited: $(cat "$work/twindbd.log")"
  sleep 0.2
done
twindbctl --socket "$sock" run daily
key="$(twindbctl --socket "$sock" --json ls | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["copies"][-1]["key"])')"
twindbctl --socket "$sock" restore file "$key" --dst "$work/restored"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "twindbd did not exit 0 on SIGTERM: $(cat "$work/twindbd.log")"
daemon_pid=""
# Every entry: type, mode, link target, and the sha256 of every file.
manifest() {
  (cd "$1" && find . -mindepth 1 -printf '%y %m %p -> %l\n' | sort &&
    find . -type f -print0 | sort -z | xargs -0 sha256sum)
}
manifest "$src" >"$work/src.manifest"
# A files copy holds the folder under its full path, as TwinDB's tar did.
manifest "$work/restored$src" >"$work/restored.manifest"
diff -u "$work/src.manifest" "$work/restored.manifest" || fail "the restored tree differs"
echo "restored $(grep -c '^f ' "$work/src.manifest") files identical"
[ -s /var/lib/twindb/state.json ] || fail "no /var/lib/twindb/state.json after a run"

step "reinstall (--force-confold) keeps a changed conffile"
echo '# changed by package-test' >>/etc/twindb/twindb.toml
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb"
tail -n 1 /etc/twindb/twindb.toml | grep -qx '# changed by package-test' ||
  fail "the upgrade replaced the changed conffile"
[ "$(stat -c %a /etc/twindb/twindb.toml)" = 600 ] || fail "the upgrade changed the config's mode"

step "remove keeps the config and the state"
dpkg-query -L twindb | sort >"$work/files"
dpkg --remove twindb
[ ! -e /usr/bin/twindbd ] || fail "remove left /usr/bin/twindbd"
[ -e /etc/twindb/twindb.toml ] || fail "remove deleted the config (only purge does)"
[ -e /var/lib/twindb/state.json ] || fail "remove deleted the state (only purge does)"

step "purge leaves nothing behind"
dpkg --purge twindb
left=()
while read -r path; do
  [ -e "$path" ] || [ -L "$path" ] || continue
  # A folder others use (/usr/bin) stays: it must belong to another package, or hold
  # files that are not ours.
  if [ -d "$path" ] && ! [ -L "$path" ]; then
    if dpkg-query -S "$path" >/dev/null 2>&1 || [ -n "$(ls -A "$path")" ]; then continue; fi
  fi
  left+=("$path")
done <"$work/files"
for path in /etc/twindb /var/lib/twindb /run/twindb; do
  [ ! -e "$path" ] || left+=("$path")
done
if compgen -G '/var/lib/dpkg/info/twindb.*' >/dev/null; then left+=(/var/lib/dpkg/info/twindb.*); fi
[ ${#left[@]} = 0 ] || fail "purge left: ${left[*]}"
