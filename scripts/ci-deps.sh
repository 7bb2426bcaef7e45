#!/usr/bin/env bash
# Installs everything CI needs on a fresh Debian bookworm machine (run as root). Idempotent and
# cheap when nothing is missing: apt runs only if a package is absent, `npm ci` only when
# node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  podman runc docker.io docker-registry qemu-user-static libc6-arm64-cross busybox-static curl sqlite3
  uidmap slirp4netns ca-certificates git tar gzip zstd debootstrap openssh-client openssh-server zsh
  # Unikernel runtime tests (issue 17): QEMU for the Nanos VMs (TCG here), gcc + static libc for the
  # test fixtures built with `gcc -static` (test/fixtures/unikernel/).
  qemu-system-x86 gcc libc6-dev
)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
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

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci-deps: missing packages (${missing[*]}) and not root; install them or rerun as root" >&2
    exit 1
  fi
  echo "ci-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "ci-deps: apt packages present"
fi

# npm writes node_modules/.package-lock.json on every install, so it is newer than package-lock.json
# exactly when node_modules matches the lockfile (or someone installed since).
if [ ! -x node_modules/.bin/bun ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ci-deps: npm ci"
  # The registry these machines reach serves only the Linux builds of biome/buf, so the lockfile
  # cannot list their other-platform optional packages and `npm ci` refuses it. `npm install`
  # accepts the same lockfile and installs the same versions without rewriting it.
  if ! npm ci --no-audit --no-fund; then
    echo "ci-deps: npm ci refused the lockfile; falling back to npm install (same versions)"
    npm install --no-save --no-audit --no-fund
  fi
else
  echo "ci-deps: node_modules up to date"
fi
