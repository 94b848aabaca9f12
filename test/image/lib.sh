# Shared settings of the image scripts (sourced, not run). Everything lives outside the
# checkout (a data root inside it would be sent to `docker build` as context) and apart from
# any system engine: our own dockerd, its own data root, exec root and socket.

# The engine's state (images, volumes, build cache) and its log: kept between runs so the
# base image is made once.
MF_DOCKER_DATA="${MF_DOCKER_DATA:-/var/lib/mailfleet-docker}"
# Its runtime files: exec root (with the containerd it manages), pid file, socket.
MF_DOCKER_RUN="${MF_DOCKER_RUN:-/run/mailfleet-docker}"
MF_DOCKER_PIDFILE="$MF_DOCKER_RUN/dockerd.pid"
MF_DOCKER_LOG="$MF_DOCKER_DATA/dockerd.log"
# Every docker command of these scripts and of the tests goes to our engine.
export DOCKER_HOST="${MF_DOCKER_HOST:-unix://$MF_DOCKER_RUN/docker.sock}"

MF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The Node LTS of the image's base: the one CI runs the whole suite on a second time
# (.ci/run's NODE_LTS), so the image runs the Node the tests ran on. One value: read it there.
mf_node_lts() {
  if [ -n "${NODE_LTS:-}" ]; then echo "$NODE_LTS"; return; fi
  local v
  v=$(sed -n 's/^NODE_LTS=\([0-9][0-9.]*\)$/\1/p' "$MF_ROOT/.ci/run" | head -n 1)
  if [ -z "$v" ]; then
    echo "no NODE_LTS=x.y.z line in .ci/run: set NODE_LTS" >&2
    return 1
  fi
  echo "$v"
}

mf_log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# True when the engine answers (not merely when its socket exists).
mf_engine_up() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
