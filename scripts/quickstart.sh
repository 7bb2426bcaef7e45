#!/usr/bin/env bash
# The README's first command (`npm run quickstart`): MCP's main job on one machine, with nothing
# to answer and no MCIAS. Installs what is missing (scripts/ci-deps.sh), builds dist/ when stale,
# then under .cache/quickstart/ (recreated each run): local-mode configs (`mcp init --local`), a
# real OCI registry (docker-registry), a tiny busybox httpd image pushed to it, a `hello` service
# definition, a background `mcp agent`, `mcp deploy hello`, an HTTP check and `mcp ps`.
#
# Usage: bash scripts/quickstart.sh           run (stops what a previous run left first)
#        bash scripts/quickstart.sh --stop    stop the agent and registry, remove the demo container
# Env:   QUICKSTART_PORT           agent gRPC port on 127.0.0.1 (default 19444)
#        QUICKSTART_REGISTRY_PORT  first registry port to try (default 15000; next free one is used)
#
# Every wait is bounded; a failure prints one line naming the step, then the logs' tails, exit 1.
# Processes are stopped only through the pid files this script wrote, containers and images only
# by the names this script gave them.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QS=$ROOT/.cache/quickstart
AGENT_PORT=${QUICKSTART_PORT:-19444}
REG_PORT_FIRST=${QUICKSTART_REGISTRY_PORT:-15000}
HTTP_ADDR=127.0.0.1:18080
SERVICE=hello
CONTAINER=hello-web # the agent names containers <service>-<component>
LOCAL_IMAGE=localhost/mcp-quickstart-hello:v1.0.0

case "$(uname -m)" in
  aarch64 | arm64) ARCH=arm64 MCP=$ROOT/dist/mcp-linux-arm64 ;;
  *) ARCH=x64 MCP=$ROOT/dist/mcp ;; # dist/mcp -> mcp-linux-x64
esac

T0=$SECONDS
STEP="start"
STEP_LOG=""

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
  if [ -s "$QS/agent.log" ]; then
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

# pid_from FILE EXPECTED: prints the pid in FILE (and removes FILE) only if that process is alive
# and its command line still contains EXPECTED, so a recycled pid is never touched.
pid_from() {
  local file=$1 expected=$2 pid cmdline
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  rm -f "$file"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  [[ "$cmdline" == *"$expected"* ]] || return 0
  echo "$pid"
}

# Stops what a previous run left: agent and registry (TERM together, KILL after 10 s), then the
# demo container and images by name.
stop_previous() {
  local pids=() p i alive
  p=$(pid_from "$QS/agent.pid" "mcp-agent.toml") && [ -n "$p" ] && pids+=("$p")
  p=$(pid_from "$QS/registry.pid" "docker-registry") && [ -n "$p" ] && pids+=("$p")
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
    podman_ rm -f -t 1 --ignore "$CONTAINER" >/dev/null 2>&1 || true
    local images=("$LOCAL_IMAGE")
    if [ -f "$QS/images" ]; then mapfile -t -O 1 images <"$QS/images"; fi
    podman_ rmi -f --ignore "${images[@]}" >/dev/null 2>&1 || true
  fi
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

if [ "${1:-}" = "--stop" ]; then
  STEP="stop"
  write_podman_conf
  stop_previous
  echo "quickstart: agent and registry stopped, container $CONTAINER removed (files stay in $QS)"
  exit 0
elif [ $# -gt 0 ]; then
  echo "quickstart: unknown argument '$1' (usage: bash scripts/quickstart.sh [--stop])" >&2
  exit 2
fi

# ---- dependencies and build -------------------------------------------------------------------
STEP="install dependencies (scripts/ci-deps.sh)"
say "$STEP"
bash scripts/ci-deps.sh || die "scripts/ci-deps.sh failed (its output is above; apt needs root)"

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

# ---- a clean slate under .cache/quickstart ----------------------------------------------------
STEP="clean up the previous run"
say "$STEP"
write_podman_conf
stop_previous
rm -rf "$QS"
write_podman_conf
mkdir -p "$QS/registry" "$QS/rootfs"

STEP="check ports"
port_in_use "$AGENT_PORT" && die "127.0.0.1:$AGENT_PORT (agent port) is in use by another process; set QUICKSTART_PORT"
port_in_use "${HTTP_ADDR#*:}" && die "$HTTP_ADDR (the demo's port) is in use by another process"
REG_PORT=""
for ((p = REG_PORT_FIRST; p < REG_PORT_FIRST + 50; p++)); do
  if ! port_in_use "$p"; then
    REG_PORT=$p
    break
  fi
done
[ -n "$REG_PORT" ] || die "no free registry port in $REG_PORT_FIRST-$((REG_PORT_FIRST + 49))"
IMAGE=127.0.0.1:$REG_PORT/hello:v1.0.0

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
printf '%s\n' "$IMAGE" >"$QS/images"
STEP_LOG=$QS/step.log
: >"$STEP_LOG"
tar -C "$rootfs" -c . | podman_ import --change 'CMD ["/bin/sh","-c","httpd -f -p 8080 -h /www"]' \
  - "$LOCAL_IMAGE" >>"$STEP_LOG" 2>&1 || die "podman import failed"
STEP="push the demo image"
run_logged podman_ push --tls-verify=false "$LOCAL_IMAGE" "$IMAGE"

# ---- the service definition -------------------------------------------------------------------
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

STEP="mcp ps"
say "$STEP"
"$MCP" ps || die "mcp ps failed"

cat <<EOF

quickstart: done in $((SECONDS - T0))s. Agent, registry and logs are in $QS/. Try next:
  MCP_CONFIG=$MCP_CONFIG $MCP status
  MCP_CONFIG=$MCP_CONFIG $MCP restart $SERVICE
  MCP_CONFIG=$MCP_CONFIG $MCP stop $SERVICE    # then: ... start $SERVICE
Stop the agent and the registry and remove the demo container:
  bash scripts/quickstart.sh --stop
EOF
