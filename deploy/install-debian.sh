#!/usr/bin/env bash
# Installs the MCP agent on a Debian node by hand, as root on the node:
#   sudo deploy/install-debian.sh /path/to/mcp-linux-amd64 [--uid 850]
# The by-hand twin of `mcp node provision` (src/roles/cli/provision-steps.ts): same mcp user with
# a pinned UID, subuid/subgid ranges, packages, linger, /srv layout and modes, binary path, and
# the SAME unit file: deploy/systemd/mcp-agent.service next to this script, the file provision
# embeds. Idempotent: every step checks first and says "done" or "already done".
# It does NOT write /srv/mcp/mcp-agent.toml (it needs the node's cert and token hash): without
# it the unit is installed and enabled but not started, and the script says what to do.
set -euo pipefail
shopt -s inherit_errexit

usage() { echo "usage: $0 <mcp binary> [--uid <uid>]" >&2; exit 2; }
die() { echo "install-debian: $*" >&2; exit 1; }
say() { printf '%-10s %s\n' "$1" "$2"; }

[[ $# -ge 1 ]] || usage
BINARY=$1
shift
MCP_UID=850
while [[ $# -gt 0 ]]; do
  case $1 in
    --uid) [[ $# -ge 2 ]] || usage; MCP_UID=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ $MCP_UID =~ ^[0-9]+$ ]] || die "--uid must be a number, got '$MCP_UID'"
[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 ...)"
[[ -f $BINARY && -x $BINARY ]] || die "$BINARY: not an executable file"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNIT_SRC=$HERE/systemd/mcp-agent.service
[[ -f $UNIT_SRC ]] || die "$UNIT_SRC missing: run the script from the repository's deploy/ directory"

MCP_HOME=/srv/mcp
AGENT_BIN=$MCP_HOME/mcp-agent
AGENT_CONFIG=$MCP_HOME/mcp-agent.toml
UNIT_PATH=/etc/systemd/system/mcp-agent.service
PACKAGES=(podman runc uidmap slirp4netns zstd gzip qemu-system-x86)
# Installed without Recommends (qemu-system-x86's pull in a GUI stack a node never uses).
NO_RECOMMENDS=(qemu-system-x86)
SUBID_MIN=100000
SUBID_COUNT=65536

# --- mcp user: checked before anything is changed. Its UID is never changed: rootless podman's
# state is keyed by the UID (the reference incident, UID 995 -> 850, lost a node's containers).
if existing=$(getent passwd mcp); then
  uid=$(cut -d: -f3 <<<"$existing")
  [[ $uid == "$MCP_UID" ]] || die "user mcp exists with UID $uid, not $MCP_UID: refusing to change it (pass --uid $uid to keep it)"
  say "user" "already done: mcp uid $uid"
else
  if other=$(getent passwd "$MCP_UID"); then die "UID $MCP_UID belongs to user ${other%%:*}; pick a free one with --uid"; fi
  if grp=$(getent group mcp); then
    gid=$(cut -d: -f3 <<<"$grp")
    [[ $gid == "$MCP_UID" ]] || die "group mcp exists with GID $gid, not $MCP_UID; pass --uid $gid or fix it"
  else
    if other=$(getent group "$MCP_UID"); then die "GID $MCP_UID belongs to group ${other%%:*}; pick a free one with --uid"; fi
    groupadd --system --gid "$MCP_UID" mcp
  fi
  getent group kvm >/dev/null || groupadd --system kvm
  useradd --system --uid "$MCP_UID" --gid "$MCP_UID" --groups kvm --home-dir "$MCP_HOME" --no-create-home \
    --shell /usr/sbin/nologin --comment "MCP agent" mcp
  say "user" "done: created mcp (uid $MCP_UID, group kvm, home $MCP_HOME, nologin)"
fi
# QEMU for unikernel components runs as mcp and opens /dev/kvm (root:kvm 0660).
if ! id -nG mcp | tr ' ' '\n' | grep -qx kvm; then
  getent group kvm >/dev/null || groupadd --system kvm
  usermod --append --groups kvm mcp
  say "kvm" "done: mcp added to group kvm"
fi

# --- packages: apt only for what is missing.
missing=()
for p in "${PACKAGES[@]}"; do
  st=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ $st == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  say "packages" "already done: ${PACKAGES[*]}"
else
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  plain=() lean=()
  for p in "${missing[@]}"; do
    if [[ " ${NO_RECOMMENDS[*]} " == *" $p "* ]]; then lean+=("$p"); else plain+=("$p"); fi
  done
  if [[ ${#plain[@]} -gt 0 ]]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${plain[@]}"; fi
  if [[ ${#lean[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${lean[@]}"
  fi
  say "packages" "done: installed ${missing[*]}"
fi

# --- subuid/subgid: one start free in both files (same grid as useradd and provision).
for f in /etc/subuid /etc/subgid; do [[ -e $f ]] || install -m 644 /dev/null "$f"; done
has_range() { grep -Eq "^(mcp|$MCP_UID):[0-9]+:[0-9]+$" "$1"; }
if has_range /etc/subuid && has_range /etc/subgid; then
  say "subids" "already done"
else
  start=$SUBID_MIN
  while read -r s c; do
    if ((s < start + SUBID_COUNT && start < s + c)); then
      start=$((SUBID_MIN + ((s + c - SUBID_MIN + SUBID_COUNT - 1) / SUBID_COUNT) * SUBID_COUNT))
    fi
  done < <(cat /etc/subuid /etc/subgid | awk -F: 'NF==3 && $2 ~ /^[0-9]+$/ {print $2, $3}' | sort -n)
  for f in /etc/subuid /etc/subgid; do
    has_range "$f" && continue
    [[ -s $f && $(tail -c1 "$f") != "" ]] && echo >>"$f"
    echo "mcp:$start:$SUBID_COUNT" >>"$f"
  done
  say "subids" "done: mcp:$start:$SUBID_COUNT"
fi

# --- linger: keeps mcp's user manager (and /run/user/<uid>) for rootless podman.
if [[ -e /var/lib/systemd/linger/mcp ]]; then
  say "linger" "already done"
else
  loginctl enable-linger mcp
  say "linger" "done"
fi

# --- who writes where (issue 16; the same rules as src/roles/cli/provision-steps.ts). /srv is
# group-writable by mcp and /srv/mcp is mcp's, so a compromised mcp user controls every name below
# them (it can plant a link anywhere there). Root therefore never writes, chowns or chmods there by
# name: directories are reached by walking from / one component at a time (cd -P), each component a
# real directory (never a link) and the one the walk arrived in (device and inode), and owner and
# mode are set on "."; the binary is written by the mcp user itself (setpriv), to a fresh temp name
# (noclobber) renamed over it with mv -T (which replaces a planted link, never follows it).
AS_MCP=(setpriv "--reuid=$MCP_UID" "--regid=$MCP_UID" --init-groups --)

# --- directories: the owners and modes of src/roles/cli/provision-steps.ts.
fixed=()
refuse() { die "$1; install-debian changes nothing through it (move it away and re-run)"; }
walk_fix() { # path uid gid mode: prints "fixed" when it changed owner or mode (run in $(...))
  local p=$1 cur= c kind id parts
  cd -P / || die "cannot enter /"
  IFS=/ read -ra parts <<<"$p"
  for c in "${parts[@]}"; do
    [[ -n $c ]] || continue
    [[ $c != . && $c != .. ]] || refuse "$p is not a plain absolute path"
    if [[ $cur/$c == "$p" && ! -e $c && ! -L $c ]]; then mkdir -m 700 -- "$c" || die "cannot create $p"; fi
    kind=$(stat -c %F -- "$c") || refuse "$cur/$c does not exist"
    id=$(stat -c %d:%i -- "$c") || refuse "$cur/$c does not exist"
    case $kind in
      directory) ;;
      "symbolic link") refuse "$cur/$c is a symbolic link, not a directory" ;;
      *) refuse "$cur/$c is a $kind, not a directory" ;;
    esac
    cd -P -- "$c" || refuse "$cur/$c cannot be entered"
    cur=$cur/$c
    [[ $(stat -c %d:%i .) == "$id" ]] || refuse "$cur was replaced while install-debian walked to it"
  done
  [[ $cur == "$p" ]] || refuse "$p is not a plain absolute path"
  [[ $(stat -c '%u %g %a' .) == "$2 $3 $4" ]] && return 0
  chown -h -- "$2:$3" . || die "cannot chown $p"
  chmod -- "$4" . || die "cannot chmod $p"
  echo fixed
}
dir() { # path uid gid mode
  local out
  out=$(walk_fix "$@")
  [[ $out == fixed ]] && fixed+=("$1")
  return 0
}
dir /srv 0 "$MCP_UID" 775
dir "$MCP_HOME" "$MCP_UID" "$MCP_UID" 750
dir "$MCP_HOME/certs" "$MCP_UID" "$MCP_UID" 700
dir "$MCP_HOME/backups" "$MCP_UID" "$MCP_UID" 700
if [[ ${#fixed[@]} -eq 0 ]]; then
  say "dirs" "already done: /srv root:mcp 775, /srv/mcp mcp:mcp 750, certs and backups 700"
else
  say "dirs" "done: set ${fixed[*]}"
fi

# --- binary: mcp:mcp 0755, read and written as the mcp user (like provision and `mcp agent
# upgrade`); replaced only when its SHA-256 differs. A root-owned 0755 copy with the right hash
# (from an earlier version of this script) is kept, as provision keeps it.
changed=0
# As mcp: "<sha256> <uid> <mode>", "none" when missing, "other" for a link or non-file.
# shellcheck disable=SC2016 # sh programs: every variable part is a positional argument
BINARY_STATE='p=$1; if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo other; exit 0; fi; [ -e "$p" ] || { echo none; exit 0; }; s=$(sha256sum < "$p"); echo "${s%% *} $(stat -c "%u %a" -- "$p")"'
# As mcp: stdin to the fresh name $3 (noclobber), mode $2, renamed over $1 (mv -T: never follows).
# shellcheck disable=SC2016
WRITE_AGENT_FILE='set -eu; p=$1; mode=$2; tmp=$3; trap '\''rc=$?; [ "$rc" -eq 0 ] || rm -f -- "$tmp"'\'' EXIT; umask 077; set -C; cat > "$tmp"; chmod -- "$mode" "$tmp"; mv -fT -- "$tmp" "$p"'
binary_state() { (cd / && "${AS_MCP[@]}" sh -c "$BINARY_STATE" sh "$AGENT_BIN") || die "cannot read $AGENT_BIN as mcp"; }
want_sha=$(sha256sum <"$BINARY") || die "cannot read $BINARY"
want_sha=${want_sha%% *}
state=$(binary_state)
read -r have_sha have_uid have_mode <<<"$state"
if [[ $have_sha == "$want_sha" && $have_mode == 755 ]]; then
  say "mcp-agent" "already done"
elif [[ $have_sha == "$want_sha" && $have_uid == "$MCP_UID" ]]; then
  (cd / && "${AS_MCP[@]}" chmod 755 -- "$AGENT_BIN") || die "cannot chmod $AGENT_BIN as mcp"
  say "mcp-agent" "done: mode set to 755"
else
  tmp="$MCP_HOME/.mcp-agent.upload-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
  (cd / && "${AS_MCP[@]}" sh -c "$WRITE_AGENT_FILE" sh "$AGENT_BIN" 755 "$tmp") <"$BINARY" ||
    die "cannot write $AGENT_BIN as mcp"
  state=$(binary_state)
  read -r have_sha _ <<<"$state"
  [[ $have_sha == "$want_sha" ]] || die "$AGENT_BIN does not have the SHA-256 of $BINARY after writing it"
  changed=1
  say "mcp-agent" "done: installed $AGENT_BIN"
fi

# --- unit: /etc/systemd/system is root's alone; replaced only when it differs (atomic rename).
put() { # src dst mode
  if [[ -f $2 ]] && cmp -s "$1" "$2"; then
    chmod "$3" "$2"
    say "${2##*/}" "already done"
    return
  fi
  install -o root -g root -m "$3" "$1" "$2.new"
  mv -fT "$2.new" "$2"
  changed=1
  say "${2##*/}" "done: installed $2"
}
put "$UNIT_SRC" "$UNIT_PATH" 644
if [[ $changed -eq 1 ]]; then systemctl daemon-reload; fi
if systemctl is-enabled --quiet mcp-agent; then
  say "enable" "already done"
else
  systemctl enable --quiet mcp-agent
  say "enable" "done: mcp-agent enabled"
fi

if [[ -f $AGENT_CONFIG ]]; then
  if [[ $changed -eq 1 ]] || ! systemctl is-active --quiet mcp-agent; then
    systemctl restart mcp-agent
    say "service" "done: mcp-agent (re)started"
  else
    say "service" "already done: mcp-agent active, nothing changed"
  fi
else
  say "service" "not started: $AGENT_CONFIG does not exist"
  cat <<MSG
Next: write $AGENT_CONFIG (mcp:mcp 0600; example: deploy/examples/mcp-agent.toml, every key:
docs/reference/agent-config.md) and the agent cert/key in $MCP_HOME/certs, then
  systemctl start mcp-agent
or let the CLI do all of it: mcp node provision <name> --ssh root@<host> --ca-cert … --ca-key …
MSG
fi
