#!/usr/bin/env bash
# Installs everything CI needs on a fresh Debian bookworm machine (run as root). Idempotent and
# cheap when nothing is missing: apt runs only if a package is absent, `npm ci` only when
# node_modules is missing or older than package-lock.json. Used by .ci/run, `npm test` and
# `npm run quickstart`, so it stays quiet: one line per step, apt's and npm's own output go to
# logs under .cache/ci-deps/ and a failure is one line saying the real cause.
#
# Usage: scripts/ci-deps.sh [--apt-only]   (--apt-only: the apt step alone, no npm)
# Env:   CI_DEPS_APT_INSTALL    packages (pkg or pkg=version) handed to apt-get install even when
#                               installed; installing the installed version changes nothing, which
#                               is how a test drives the apt step. They never trigger apt-get update.
#        CI_DEPS_LOCK_TIMEOUT   seconds to wait for the dpkg/apt locks (default 300)
#        CI_DEPS_NO_UPDATE=1    never run apt-get update (install from the package lists as they are)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_ONLY=""
case "${1:-}" in
  "") ;;
  --apt-only) APT_ONLY=1 ;;
  *)
    echo "ci-deps: unknown argument '$1' (usage: scripts/ci-deps.sh [--apt-only])" >&2
    exit 2
    ;;
esac

LOCK_TIMEOUT=${CI_DEPS_LOCK_TIMEOUT:-300}
if ! [[ "$LOCK_TIMEOUT" =~ ^[0-9]+$ ]]; then
  echo "ci-deps: CI_DEPS_LOCK_TIMEOUT must be a number of seconds, got '$LOCK_TIMEOUT'" >&2
  exit 2
fi
LOG_DIR=$PWD/.cache/ci-deps

APT_PACKAGES=(
  podman runc docker.io docker-registry qemu-user-static libc6-arm64-cross busybox-static curl sqlite3
  uidmap slirp4netns ca-certificates git tar gzip zstd debootstrap openssh-client openssh-server zsh
  # Unikernel runtime tests (issue 17): QEMU for the Nanos VMs (TCG here), gcc + static libc for the
  # test fixtures built with `gcc -static` (test/fixtures/unikernel/).
  qemu-system-x86 gcc libc6-dev
)

# Names as dpkg knows them: pkg=version and pkg:arch both name pkg.
pkg_name() {
  local n=${1%%=*}
  echo "${n%%:*}"
}
read -r -a forced <<<"${CI_DEPS_APT_INSTALL:-}"
# Package names only (pkg, pkg:arch, pkg=version): anything else, an option above all (apt-get
# would take `-oDPkg::Pre-Invoke::=…` and run it as root), is refused.
for p in "${forced[@]}"; do
  if ! [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$ ]]; then
    echo "ci-deps: CI_DEPS_APT_INSTALL: '$p' is not a package name (pkg, pkg:arch or pkg=version)" >&2
    exit 2
  fi
done

# One dpkg-query for every package named here (one per package took seconds on a busy machine).
declare -A INSTALLED=()
query=()
for p in "${APT_PACKAGES[@]}" "${forced[@]}"; do query+=("$(pkg_name "$p")"); done
while read -r name status; do
  [ "$status" != "install ok installed" ] || INSTALLED[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${query[@]}" 2>/dev/null || true)

# installed PKG[=VERSION]: whether dpkg has the package installed (any version).
installed() { [ -n "${INSTALLED[$(pkg_name "$1")]:-}" ]; }

# The locks apt-get and dpkg take (fcntl locks; flock(1) users take flock locks on the same files).
APT_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)

# lock_holder: prints "LOCKFILE, held by pid PID (COMMAND)" for the first of APT_LOCKS some process
# holds, or fails. A descriptor's /proc/PID/fdinfo has a "lock:" line while it holds a lock of
# either kind, so this sees apt, dpkg, unattended-upgrades and flock(1) alike (root sees all).
lock_holder() {
  local names=() l link pid fd
  for l in "${APT_LOCKS[@]}"; do names+=(-o -lname "$l"); done
  while IFS=$'\t' read -r link l; do
    pid=${link#/proc/}
    pid=${pid%%/*}
    fd=${link##*/}
    if grep -q '^lock:' "/proc/$pid/fdinfo/$fd" 2>/dev/null; then
      echo "$l, held by pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo "gone"))"
      return 0
    fi
  done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( -false "${names[@]}" \) -printf '%p\t%l\n' 2>/dev/null)
  return 1
}

# wait_for_apt_locks: waits (at most LOCK_TIMEOUT s in all) until no process holds an apt/dpkg
# lock; says once what it waits for. On timeout sets LOCK_HELD and fails.
LOCK_DEADLINE=$((SECONDS + LOCK_TIMEOUT))
LOCK_HELD=""
wait_for_apt_locks() {
  local held said=""
  while held=$(lock_holder); do
    if [ -z "$said" ]; then
      echo "ci-deps: waiting up to ${LOCK_TIMEOUT}s for the apt/dpkg lock $held"
      said=1
    fi
    if [ "$SECONDS" -ge "$LOCK_DEADLINE" ]; then
      LOCK_HELD=$held
      return 1
    fi
    sleep 1
  done
  return 0
}

# apt_cause STEP STATUS: the one line that says why apt-get STEP failed, from its log.
apt_cause() {
  local step=$1 rc=$2 log=$APT_LOG line pkgs
  # Drop the "E: " / "W: " prefix and keep lines short: these become part of one line.
  # apt's own E:/W: line when there is one (it names the URL or package), else the first match.
  first() {
    { grep -m1 -E "^[EW]: .*($1)" "$log" || grep -m1 -E "$1" "$log"; } |
      sed -E 's/^[EW]: //; s/[[:space:]]+/ /g; s/^ //' | cut -c1-200
  }
  local net='Failed to fetch|Temporary failure resolving|Could not resolve|Could not connect|Unable to connect|Connection (failed|timed out|refused)|Network is unreachable|Some index files failed to download|does not have a Release file|NO_PUBKEY|is not signed|Hash Sum mismatch|40[34] +Not Found|Clearsigned file isn.t valid'
  if grep -qE 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the )?(administration )?directory' "$log"; then
    line=$(first 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock')
    echo "apt-get $step: an apt/dpkg lock is still held after waiting ${LOCK_TIMEOUT}s ($line); let that apt finish (or stop it), then rerun"
  elif grep -qE 'Unable to locate package|has no installation candidate|Version .* for .* was not found' "$log"; then
    pkgs=$(grep -oE "Unable to locate package [^ ]+|Package '[^']+' has no installation candidate|Version '[^']+' for '[^']+' was not found" "$log" |
      sed -E "s/Unable to locate package //; s/Package '([^']+)'.*/\1/; s/Version '([^']+)' for '([^']+)'.*/\2=\1/" |
      sort -u | tr '\n' ' ')
    if grep -qE "$net" "$log"; then
      echo "unknown package ${pkgs% } (the package lists could not be refreshed: $(first "$net"))"
    else
      echo "unknown package ${pkgs% }: not in the configured apt sources (check the name and /etc/apt/sources.list.d/)"
    fi
  elif grep -qE "$net" "$log"; then
    echo "apt-get $step: network or repository failure: $(first "$net")"
  elif grep -qE 'Permission denied|are you root' "$log"; then
    echo "apt-get $step was refused although running as root (uid 0): $(first 'Permission denied|are you root')"
  else
    line=$(grep -E '^E: ' "$log" | tail -n 1 | sed -E 's/^E: //' | cut -c1-200) || true
    [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-200) || true
    echo "apt-get $step failed (exit $rc): ${line:-no output}"
  fi
}

# apt_step STEP ARGS...: apt-get STEP after the locks are free, its output appended to APT_LOG;
# on failure prints the cause in one line and exits 1.
apt_step() {
  local step=$1 rc=0
  shift
  if ! wait_for_apt_locks; then
    echo "ci-deps: apt-get $step: gave up after ${LOCK_TIMEOUT}s waiting for the apt/dpkg lock $LOCK_HELD; let that apt finish (or stop it), then rerun" >&2
    exit 1
  fi
  # apt and dpkg also wait themselves for a lock taken after the check above, within what is left.
  local left=$((LOCK_DEADLINE - SECONDS))
  [ "$left" -ge 10 ] || left=10
  echo "== apt-get $step $*" >>"$APT_LOG"
  LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$left" "$step" "$@" \
    </dev/null >>"$APT_LOG" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "ci-deps: $(apt_cause "$step" "$rc") (apt output: $APT_LOG)" >&2
    exit 1
  fi
  # apt-get update exits 0 when some sources failed; installing from stale lists would fail later.
  if [ "$step" = update ] && grep -qE '^(W|E): (Failed to fetch|Some index files failed)' "$APT_LOG"; then
    echo "ci-deps: $(apt_cause "$step" "$rc") (apt output: $APT_LOG)" >&2
    exit 1
  fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
# node/npm may come from NodeSource (npm inside the nodejs package) or Debian; only add Debian's
# when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
# Asked for explicitly: installed anyway; only a really missing one makes the lists worth refreshing.
for p in "${forced[@]}"; do
  installed "$p" || missing+=("$p")
done
install=("${missing[@]}")
for p in "${forced[@]}"; do
  [[ " ${install[*]} " == *" $p "* ]] || install+=("$p")
done

if [ "${#install[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci-deps: apt must install ${install[*]} but this is not root (uid $(id -u)); rerun as root or install them yourself" >&2
    exit 1
  fi
  mkdir -p "$LOG_DIR"
  APT_LOG=$LOG_DIR/apt.log
  : >"$APT_LOG"
  echo "ci-deps: installing ${install[*]} (apt output: $APT_LOG)"
  if [ "${#missing[@]}" -gt 0 ] && [ "${CI_DEPS_NO_UPDATE:-}" != 1 ]; then
    apt_step update
  fi
  apt_step install -y --no-install-recommends "${install[@]}"
else
  echo "ci-deps: apt packages present"
fi

[ -z "$APT_ONLY" ] || exit 0

# npm writes node_modules/.package-lock.json on every install, so it is newer than package-lock.json
# exactly when node_modules matches the lockfile (or someone installed since).
if [ ! -x node_modules/.bin/bun ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm's own summary ("added 98 packages in 40s"), not the warnings it prints after it.
  npm_summary() {
    grep -m1 -E '^(added|removed|changed|up to date)' "$1" ||
      grep -v '^[[:space:]]*$' "$1" | tail -n 1 || true
  }
  mkdir -p "$LOG_DIR"
  ci_log=$LOG_DIR/npm-ci.log
  install_log=$LOG_DIR/npm-install.log
  echo "ci-deps: npm ci (output: $ci_log)"
  # The registry these machines reach serves only the Linux builds of biome/buf, so the lockfile
  # cannot list their other-platform optional packages and `npm ci` refuses it (with its ~100
  # lines of usage text, kept in the log). `npm install` accepts the same lockfile and installs
  # the same versions without rewriting it.
  if npm ci --no-audit --no-fund >"$ci_log" 2>&1; then
    echo "ci-deps: npm ci: $(npm_summary "$ci_log")"
  else
    rc=$?
    # npm's own words: "Missing: <pkg>@<version> from lock file" per package, else its first error.
    n=$(grep -E '^npm error (Missing|Invalid): ' "$ci_log" | sort -u | wc -l) || true
    if [ "${n:-0}" -gt 0 ]; then
      first=$(grep -m1 -E '^npm error (Missing|Invalid): ' "$ci_log" | sed 's/^npm error //' | cut -c1-120) || true
      [ "$n" -eq 1 ] || first+=", and $((n - 1)) more"
      what="refused the lockfile (it does not match package.json: $first)"
    else
      reason=$(grep -E '^npm error ' "$ci_log" |
        grep -vE '^npm error (code|errno|syscall|path|dest) |^npm error (A complete log|Log files)|^npm error *$' |
        head -n 1 | sed 's/^npm error //' | cut -c1-160) || true
      what="failed (${reason:-exit $rc})"
    fi
    echo "ci-deps: npm ci $what; falling back to npm install (same versions)"
    if npm install --no-save --no-audit --no-fund >"$install_log" 2>&1; then
      echo "ci-deps: npm install: $(npm_summary "$install_log") (output: $install_log)"
    else
      rc=$?
      {
        echo "--- npm ci output ($ci_log)"
        cat "$ci_log"
        echo "--- npm install output ($install_log)"
        cat "$install_log"
        echo "ci-deps: npm install failed too (exit $rc); both outputs are above"
      } >&2
      exit 1
    fi
  fi
else
  echo "ci-deps: node_modules up to date"
fi
