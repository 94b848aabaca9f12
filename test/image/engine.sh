#!/usr/bin/env bash
# Our own Docker engine for the image tests: Debian's dockerd, started by PID with its own data
# root, exec root, pid file and socket (see lib.sh), no bridge and no iptables rules, so
# containers run with `--network host` or `--network none` only and nothing leaves loopback.
#
#   test/image/engine.sh start    starts it unless it answers already (idempotent)
#   test/image/engine.sh stop     stops the one we started (by the PID in its pid file)
#   test/image/engine.sh status   exit 0 when it answers
#   test/image/engine.sh purge    stops it and removes its data root (images, volumes, cache)
#   test/image/engine.sh env      prints the DOCKER_HOST line to use it from a shell
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
pid_of() { cat "$MF_DOCKER_PIDFILE" 2>/dev/null || true; }

start() {
  if mf_engine_up; then
    mf_log "engine already answers at $DOCKER_HOST"
    return 0
  fi
  if [ -n "${MF_DOCKER_HOST:-}" ]; then
    mf_log "MF_DOCKER_HOST=$MF_DOCKER_HOST does not answer, and it is not ours to start"
    return 1
  fi
  local dockerd
  dockerd=$(command -v dockerd || true)
  [ -n "$dockerd" ] || dockerd=/usr/sbin/dockerd
  if [ ! -x "$dockerd" ]; then
    mf_log "dockerd not found: apt-get install -y docker.io"
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    mf_log "dockerd needs root"
    return 1
  fi
  local pid
  pid=$(pid_of)
  if alive "$pid"; then
    mf_log "dockerd $pid is running but does not answer yet; waiting for it"
  else
    rm -f "$MF_DOCKER_PIDFILE"
    mkdir -p "$MF_DOCKER_DATA/root" "$MF_DOCKER_RUN/exec"
    mf_log "starting $dockerd (data root $MF_DOCKER_DATA/root, socket $DOCKER_HOST, log $MF_DOCKER_LOG)"
    # setsid: its own session, so a Ctrl-C meant for the tests does not reach it.
    setsid "$dockerd" \
      --data-root "$MF_DOCKER_DATA/root" \
      --exec-root "$MF_DOCKER_RUN/exec" \
      --pidfile "$MF_DOCKER_PIDFILE" \
      --host "$DOCKER_HOST" \
      --bridge=none --iptables=false --ip-masq=false \
      </dev/null >>"$MF_DOCKER_LOG" 2>&1 &
    pid=$!
  fi
  local deadline=$((SECONDS + 60))
  until mf_engine_up; do
    if ! alive "$pid"; then
      mf_log "dockerd exited; the end of $MF_DOCKER_LOG:"
      tail -n 30 "$MF_DOCKER_LOG" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      mf_log "dockerd $pid did not answer within 60 s; the end of $MF_DOCKER_LOG:"
      tail -n 30 "$MF_DOCKER_LOG" >&2
      return 1
    fi
    sleep 0.2
  done
  mf_log "engine up: dockerd $(pid_of), $(docker info --format 'server {{.ServerVersion}}, storage driver {{.Driver}}')"
}

# dockerd leaves its network namespace mounted in the exec root once it has gone; let go of it
# (and of anything else of ours still mounted), so the directories can be removed.
release_mounts() {
  local m
  for m in $(awk -v run="$MF_DOCKER_RUN/" -v data="$MF_DOCKER_DATA/" 'index($2, run) == 1 || index($2, data) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

stop() {
  local pid
  pid=$(pid_of)
  if ! alive "$pid"; then
    mf_log "our dockerd is not running"
    rm -f "$MF_DOCKER_PIDFILE"
    release_mounts
    return 0
  fi
  mf_log "stopping dockerd $pid"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      mf_log "dockerd $pid still runs after 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  release_mounts
  mf_log "stopped"
}

purge() {
  stop
  mf_log "removing $MF_DOCKER_DATA and $MF_DOCKER_RUN"
  rm -rf "$MF_DOCKER_DATA" "$MF_DOCKER_RUN"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) mf_engine_up ;;
  purge) purge ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *) echo "usage: $0 start|stop|status|purge|env" >&2; exit 2 ;;
esac
