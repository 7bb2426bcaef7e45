#!/usr/bin/env bash
# The README's first command (`npm run quickstart`): MCP's main job on one machine, with nothing
# to answer and no MCIAS. First checks that its ports are free (before it changes anything), then
# installs what is missing (scripts/ci-deps.sh), builds dist/ when stale, and under
# .cache/quickstart/ (recreated each run): local-mode configs (`mcp init --local`), a real OCI
# registry (docker-registry), a tiny busybox httpd image pushed to it, a `hello` service
# definition, a background `mcp agent`, `mcp deploy hello`, an HTTP check, `mcp status hello` and
# `mcp ps`.
#
# Usage: bash scripts/quickstart.sh           run (stops what a previous run left first)
#        bash scripts/quickstart.sh --stop    stop the agent and registry, remove the demo container
# Env:   QUICKSTART_PORT           agent gRPC port on 127.0.0.1 (default 19444)
#        QUICKSTART_HTTP_PORT      the demo's HTTP port on 127.0.0.1 (default 18080)
#        QUICKSTART_REGISTRY_PORT  first registry port to try (default 15000; next free one is used)
#        QUICKSTART_DIR            where it works (default .cache/quickstart in the repository); a
#                                  directory of your choice must be new, empty or a quickstart's own
#        QUICKSTART_SERVICE        the demo service's name (default hello; its container is
#                                  <name>-web), so a second quickstart or a test never meets yours
#
# Every wait is bounded; a failure prints one line naming the step, then the logs' tails, exit 1.
# A busy port is one line naming the port and the variable that moves it, exit 1, nothing changed.
# Processes are stopped only through the pid files this script wrote, containers and images only
# by the names this script gave them.
set -Eeuo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD

QS=${QUICKSTART_DIR:-$ROOT/.cache/quickstart}
case "$QS" in /*) ;; *) QS=$CALLER_PWD/$QS ;; esac
QS=${QS%/}
AGENT_PORT=${QUICKSTART_PORT:-19444}
HTTP_PORT=${QUICKSTART_HTTP_PORT:-18080}
REG_PORT_FIRST=${QUICKSTART_REGISTRY_PORT:-15000}
SERVICE=${QUICKSTART_SERVICE:-hello}
MARKER=.mcp-quickstart # written into QS: a directory with it may be wiped by the next run

bad_env() {
  echo "quickstart: $*" >&2
  exit 2
}
for v in "QUICKSTART_PORT:$AGENT_PORT" "QUICKSTART_HTTP_PORT:$HTTP_PORT" "QUICKSTART_REGISTRY_PORT:$REG_PORT_FIRST"; do
  val=${v#*:}
  if ! [[ "$val" =~ ^[0-9]{1,5}$ ]] || [ "$val" -lt 1 ] || [ "$val" -gt 65535 ]; then
    bad_env "${v%%:*} must be a TCP port (1-65535), got '$val'"
  fi
done
[ "$AGENT_PORT" != "$HTTP_PORT" ] || bad_env "QUICKSTART_PORT and QUICKSTART_HTTP_PORT are both $AGENT_PORT; give them different ports"
[[ "$SERVICE" =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] && [ "$SERVICE" != mcp ] && [ "$SERVICE" != mcp-master ] ||
  bad_env "QUICKSTART_SERVICE must be a service name (lowercase letters, digits, '-'), got '$SERVICE'"
[ "$QS" != "" ] && [ "$QS" != "$ROOT" ] && [ "$QS" != "${HOME:-}" ] || bad_env "QUICKSTART_DIR must not be '${QUICKSTART_DIR:-}'"

HTTP_ADDR=127.0.0.1:$HTTP_PORT
CONTAINER=$SERVICE-web # the agent names containers <service>-<component>
LOCAL_IMAGE=localhost/mcp-quickstart-$SERVICE:v1.0.0

case "$(uname -m)" in
  aarch64 | arm64) ARCH=arm64 MCP=$ROOT/dist/mcp-linux-arm64 ;;
  *) ARCH=x64 MCP=$ROOT/dist/mcp ;; # dist/mcp -> mcp-linux-x64
esac

T0=$SECONDS
STEP="start"
STEP_LOG=""
AGENT_STARTED=""

if [ -t 1 ]; then
  say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
else
  say() { printf '==> %s\n' "$*"; }
fi

tail_logs() {
  if [ -n "$STEP_LOG" ] && [ -s "$STEP_LOG" ]; then
    echo "--- last lines of $STEP_LOG"
    tail -n 15 "$STEP_LOG"
  fi
  if [ -n "$AGENT_STARTED" ] && [ -s "$QS/agent.log" ]; then
    echo "--- last lines of $QS/agent.log"
    tail -n 20 "$QS/agent.log"
  fi
}

# One clear line, then the logs that explain it.
die() {
  trap - ERR
  echo "quickstart: FAILED in step \"$STEP\": $*" >&2
  tail_logs >&2
  exit 1
}
trap 'die "command exited with status $? (line $LINENO)"' ERR

# run_logged CMD...: runs CMD with its output in $STEP_LOG (shown only when it fails).
run_logged() {
  STEP_LOG=$QS/step.log
  : >"$STEP_LOG"
  "$@" >>"$STEP_LOG" 2>&1 || die "$(basename "$1") exited with status $?"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_podman_conf() {
  mkdir -p "$QS"
  # crun and the default ulimits fail on this machine kind; the registry is plain HTTP on 127.0.0.1.
  printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$QS/containers.conf"
  printf '[[registry]]\nlocation = "127.0.0.1"\ninsecure = true\n' >"$QS/registries.conf"
  export CONTAINERS_CONF=$QS/containers.conf
  export CONTAINERS_REGISTRIES_CONF=$QS/registries.conf
}

podman_() { podman --runtime runc "$@"; }

# The exact arguments this script starts its agent and registry with (start_bg below): a pid file
# is trusted only for a process that has them, this directory's paths included, so a recycled pid
# (say, the machine's own docker-registry or mcp agent after a reboot) is never signalled.
AGENT_ARGV="agent --config $QS/mcp/mcp-agent.toml"
REGISTRY_ARGV="docker-registry serve $QS/registry.yml"

# alive_pid FILE EXPECTED: prints the pid in FILE only if that process is alive and its command
# line still contains EXPECTED, so a recycled pid is never touched.
alive_pid() {
  local file=$1 expected=$2 pid cmdline
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  [[ "$cmdline" == *"$expected"* ]] || return 0
  echo "$pid"
}

# pid_from FILE EXPECTED: alive_pid, and FILE is removed.
pid_from() {
  alive_pid "$1" "$2"
  rm -f "$1"
}

# What the previous run in $QS used, read back from the files it wrote (earlier versions of this
# script wrote the same ones): its agent port, its demo's HTTP port and container name.
PREV_AGENT_PORT=""
PREV_HTTP_PORT=""
PREV_CONTAINER=""
read_previous() {
  local svc name
  if [ -f "$QS/mcp/mcp-agent.toml" ]; then
    PREV_AGENT_PORT=$(sed -nE 's/^grpc_addr = "127\.0\.0\.1:([0-9]+)"$/\1/p' "$QS/mcp/mcp-agent.toml" | head -n 1)
  fi
  # Only the service this script wrote (its name recorded in $QS/service at run time): another
  # definition the operator added to services/ names containers that are not ours to remove.
  name=$(sed -nE '1s/^([a-z0-9-]+)$/\1/p' "$QS/service" 2>/dev/null || true)
  svc=$QS/mcp/services/$name.toml
  if [ -n "$name" ] && [ -f "$svc" ]; then
    PREV_CONTAINER=$name-web
    PREV_HTTP_PORT=$(sed -nE 's/^ports = \["127\.0\.0\.1:([0-9]+):8080"\]$/\1/p' "$svc" | head -n 1)
  fi
  return 0
}

container_exists() { [ -n "$1" ] && command -v podman >/dev/null 2>&1 && podman_ container exists "$1" >/dev/null 2>&1; }

# Stops what a previous run left: agent and registry (TERM together, KILL after 10 s), then the
# demo container and images by name.
stop_previous() {
  local pids=() p i alive
  read_previous
  p=$(pid_from "$QS/agent.pid" "$AGENT_ARGV") && [ -n "$p" ] && pids+=("$p")
  p=$(pid_from "$QS/registry.pid" "$REGISTRY_ARGV") && [ -n "$p" ] && pids+=("$p")
  if [ "${#pids[@]}" -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive=""
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ -z "$alive" ] && break
      sleep 0.1
    done
    if [ -n "$alive" ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  fi
  if command -v podman >/dev/null 2>&1; then
    local containers=("$CONTAINER")
    [ -z "$PREV_CONTAINER" ] || [ "$PREV_CONTAINER" = "$CONTAINER" ] || containers+=("$PREV_CONTAINER")
    podman_ rm -f -t 1 --ignore "${containers[@]}" >/dev/null 2>&1 || true
    local images=("$LOCAL_IMAGE")
    if [ -f "$QS/images" ]; then mapfile -t -O 1 images <"$QS/images"; fi
    podman_ rmi -f --ignore "${images[@]}" >/dev/null 2>&1 || true
  fi
}

# The ports are checked before anything changes. A busy port is fine only when the previous run
# of this directory holds it (its live agent, its demo container): stopping that run frees it.
busy() { # PORT WHAT VARIABLE
  echo "quickstart: 127.0.0.1:$1 ($2) is in use by another process; set $3 to a free port (nothing was changed)" >&2
  exit 1
}
check_ports_first() {
  read_previous
  if port_in_use "$AGENT_PORT" && ! { [ "$AGENT_PORT" = "$PREV_AGENT_PORT" ] &&
    [ -n "$(alive_pid "$QS/agent.pid" "$AGENT_ARGV")" ]; }; then
    busy "$AGENT_PORT" "the agent's gRPC port" QUICKSTART_PORT
  fi
  if port_in_use "$HTTP_PORT" && ! { [ "$HTTP_PORT" = "$PREV_HTTP_PORT" ] && container_exists "$PREV_CONTAINER"; }; then
    busy "$HTTP_PORT" "the demo's HTTP port" QUICKSTART_HTTP_PORT
  fi
  return 0
}

# $QS is wiped by each run: only the default place, a new or empty directory, or one a quickstart
# made (it has $MARKER).
qs_is_ours() {
  [ -e "$QS" ] || return 0
  [ -d "$QS" ] || return 1
  [ "$QS" = "$ROOT/.cache/quickstart" ] || [ -e "$QS/$MARKER" ] || [ -z "$(ls -A "$QS")" ]
}

# start_bg NAME PIDFILE LOG CMD...: starts CMD in its own session (it outlives this script and a
# closed terminal) and records its pid; the child writes the pid itself, so it is exact.
start_bg() {
  local name=$1 pidfile=$2 log=$3 i
  shift 3
  # shellcheck disable=SC2016 # $$ and $1 expand in the child shell, not here
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" </dev/null >"$log" 2>&1 &
  for ((i = 0; i < 50; i++)); do
    [ -s "$pidfile" ] && return 0
    sleep 0.1
  done
  die "$name did not start (no pid file after 5 s)"
}

NOT_OURS="QUICKSTART_DIR $QS is not empty and no quickstart made it (no $MARKER in it); choose a new or empty directory"
if [ "${1:-}" = "--stop" ]; then
  STEP="stop"
  qs_is_ours || bad_env "$NOT_OURS"
  write_podman_conf
  stop_previous
  echo "quickstart: agent and registry stopped, container ${PREV_CONTAINER:-$CONTAINER} removed (files stay in $QS)"
  exit 0
elif [ $# -gt 0 ]; then
  echo "quickstart: unknown argument '$1' (usage: bash scripts/quickstart.sh [--stop])" >&2
  exit 2
fi

# ---- before anything changes: the directory and the ports -------------------------------------
STEP="check ports"
qs_is_ours || bad_env "$NOT_OURS"
check_ports_first

# ---- dependencies and build -------------------------------------------------------------------
STEP="install dependencies (scripts/ci-deps.sh)"
say "$STEP"
bash scripts/ci-deps.sh || die "scripts/ci-deps.sh failed (the line above says why)"

STEP="build"
needs_build() {
  local bin=$ROOT/dist/mcp-linux-$ARCH # not the dist/mcp link: find -newer would use the link's mtime
  [ -x "$bin" ] || return 0
  [ -n "$(find src scripts/build.ts package-lock.json tsconfig.json -newer "$bin" -print -quit 2>/dev/null)" ]
}
if needs_build; then
  say "build (npm run build)"
  t=$SECONDS
  npm run build || die "npm run build failed"
  say "built in $((SECONDS - t))s"
else
  say "build: dist/mcp-linux-$ARCH is up to date"
fi

# ---- a clean slate in $QS ---------------------------------------------------------------------
STEP="clean up the previous run"
say "$STEP"
write_podman_conf
stop_previous
rm -rf "$QS"
write_podman_conf
mkdir -p "$QS/registry" "$QS/rootfs"
: >"$QS/$MARKER"

STEP="check ports"
port_in_use "$AGENT_PORT" && die "127.0.0.1:$AGENT_PORT (the agent's gRPC port) is still in use after stopping the previous run; set QUICKSTART_PORT to a free port"
port_in_use "$HTTP_PORT" && die "$HTTP_ADDR (the demo's HTTP port) is still in use after stopping the previous run; set QUICKSTART_HTTP_PORT to a free port"
REG_PORT=""
for ((p = REG_PORT_FIRST; p < REG_PORT_FIRST + 50; p++)); do
  if [ "$p" != "$AGENT_PORT" ] && [ "$p" != "$HTTP_PORT" ] && ! port_in_use "$p"; then
    REG_PORT=$p
    break
  fi
done
[ -n "$REG_PORT" ] || die "no free registry port in $REG_PORT_FIRST-$((REG_PORT_FIRST + 49)) (QUICKSTART_REGISTRY_PORT moves the range)"
IMAGE=127.0.0.1:$REG_PORT/$SERVICE:v1.0.0

# ---- local mode configs -----------------------------------------------------------------------
STEP="mcp init --local"
say "$STEP (agent on 127.0.0.1:$AGENT_PORT)"
run_logged "$MCP" init --local --dir "$QS/mcp" --listen "127.0.0.1:$AGENT_PORT" \
  --runtime-arg=--runtime --runtime-arg=runc
export MCP_CONFIG=$QS/mcp/mcp.toml

# ---- a real OCI registry ----------------------------------------------------------------------
STEP="start the registry"
say "$STEP (docker-registry on 127.0.0.1:$REG_PORT)"
cat >"$QS/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $QS/registry
http:
  addr: 127.0.0.1:$REG_PORT
EOF
start_bg registry "$QS/registry.pid" "$QS/registry.log" docker-registry serve "$QS/registry.yml"
STEP_LOG=$QS/registry.log
ok=""
for ((i = 0; i < 100; i++)); do
  if curl -fsS --max-time 1 "http://127.0.0.1:$REG_PORT/v2/" >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 0.1
done
[ -n "$ok" ] || die "docker-registry did not answer on 127.0.0.1:$REG_PORT/v2/ within 10 s"

# ---- the demo image ---------------------------------------------------------------------------
STEP="build the demo image"
say "$STEP ($IMAGE, busybox httpd)"
rootfs=$QS/rootfs
mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/etc" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh httpd sleep cat echo ls wget; do ln -s busybox "$rootfs/bin/$applet"; done
echo "Hello from MCP" >"$rootfs/www/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
# Recorded before they exist, so a run that fails half-way is still cleaned up by name.
printf '%s\n' "$IMAGE" "$LOCAL_IMAGE" >"$QS/images"
STEP_LOG=$QS/step.log
: >"$STEP_LOG"
tar -C "$rootfs" -c . | podman_ import --change 'CMD ["/bin/sh","-c","httpd -f -p 8080 -h /www"]' \
  - "$LOCAL_IMAGE" >>"$STEP_LOG" 2>&1 || die "podman import failed"
STEP="push the demo image"
run_logged podman_ push --tls-verify=false "$LOCAL_IMAGE" "$IMAGE"

# ---- the service definition -------------------------------------------------------------------
printf '%s\n' "$SERVICE" >"$QS/service"
cat >"$QS/mcp/services/$SERVICE.toml" <<EOF
# The quickstart's demo service: busybox httpd serving /www on $HTTP_ADDR.
name = "$SERVICE"
node = "local"

[[components]]
name = "web"
image = "$IMAGE"
ports = ["$HTTP_ADDR:8080"]
# httpd in the background and a shell that exits on TERM: as PID 1 httpd would ignore the stop signal.
cmd = ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
EOF

# ---- the agent --------------------------------------------------------------------------------
STEP="start the agent"
say "$STEP (log: $QS/agent.log)"
start_bg agent "$QS/agent.pid" "$QS/agent.log" "$MCP" agent --config "$QS/mcp/mcp-agent.toml"
AGENT_STARTED=1
STEP_LOG=$QS/step.log
ok=""
for ((i = 0; i < 60; i++)); do
  kill -0 "$(cat "$QS/agent.pid")" 2>/dev/null || die "the agent exited during startup"
  if "$MCP" node list >"$STEP_LOG" 2>&1; then
    ok=1
    break
  fi
  sleep 0.25
done
[ -n "$ok" ] || die "the agent did not answer \`mcp node list\` within ~30 s"

# ---- deploy and check -------------------------------------------------------------------------
STEP="mcp deploy $SERVICE"
say "$STEP"
t=$SECONDS
STEP_LOG=""
"$MCP" deploy "$SERVICE" || die "mcp deploy $SERVICE failed"
say "deployed in $((SECONDS - t))s"

STEP="HTTP check"
body=""
for ((i = 0; i < 40; i++)); do
  if body=$(curl -fsS --max-time 2 "http://$HTTP_ADDR/" 2>/dev/null); then break; fi
  body=""
  sleep 0.25
done
[ -n "$body" ] || die "http://$HTTP_ADDR/ did not answer within ~20 s"
say "curl http://$HTTP_ADDR/ -> $body"

STEP="mcp status $SERVICE"
say "$STEP"
rc=0
"$MCP" status "$SERVICE" || rc=$?
[ "$rc" -eq 0 ] || die "mcp status $SERVICE exited with status $rc"

STEP="mcp ps"
say "$STEP"
"$MCP" ps || die "mcp ps failed"

# The --stop line names the variables that moved this run, so it stops this run.
stop_env=""
[ -z "${QUICKSTART_DIR:-}" ] || stop_env+="QUICKSTART_DIR=$QS "
[ -z "${QUICKSTART_SERVICE:-}" ] || stop_env+="QUICKSTART_SERVICE=$SERVICE "

cat <<EOF

quickstart: done in $((SECONDS - T0))s. Agent, registry and logs are in $QS/. Try next:
  MCP_CONFIG=$MCP_CONFIG $MCP logs $SERVICE
  MCP_CONFIG=$MCP_CONFIG $MCP restart $SERVICE
  MCP_CONFIG=$MCP_CONFIG $MCP stop $SERVICE    # then: ... start $SERVICE
Stop the agent and the registry and remove the demo container:
  ${stop_env}bash scripts/quickstart.sh --stop
EOF
