#!/usr/bin/env bash
# CI entry point for the image tests (issue 13): on a fresh Debian 12 machine, as root, after
# `npm ci`. Installs Docker's engine and debootstrap from Debian, starts our own dockerd (no
# bridge, no iptables: containers use the host's loopback or no network), runs
# `npm run test:image` with CI set (a missing piece fails instead of skipping), and stops the
# engine again. Each step says how long it took.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

export CI="${CI:-true}"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "test/image/ci.sh: run me as root: apt-get, dockerd and debootstrap need it" >&2
  exit 1
fi

started=$SECONDS
step_start=$SECONDS
step() {
  if [ -n "${step_name:-}" ]; then printf '==> %s: %d s\n' "$step_name" $((SECONDS - step_start)); fi
  step_name="$*"
  step_start=$SECONDS
  printf '\n==> %s\n' "$*"
}

PACKAGES=(
  docker.io               # dockerd, containerd, runc and a docker client
  debootstrap             # the Debian the base images are made from (nothing can be pulled)
  debian-archive-keyring  # debootstrap checks the mirror's signatures with it
  openssl                 # the test CA and the relay's certificate
)

# Installing docker.io would start Debian's own engine, with its bridge and iptables rules:
# keep package scripts from starting services (no-op where nothing would start them).
policy=/usr/sbin/policy-rc.d
cleanup() {
  if [ -n "${policy_made:-}" ]; then rm -f "$policy"; fi
  if [ -n "${engine_started:-}" ]; then test/image/engine.sh stop || true; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  policy_made=1
fi

step "apt-get update"
apt-get update

step "apt-get install ${PACKAGES[*]}"
# --no-upgrade: install what is missing, upgrade nothing else on a machine that has them.
apt-get install -y --no-upgrade "${PACKAGES[@]}"
if [ -n "${policy_made:-}" ]; then rm -f "$policy"; policy_made=; fi

if [ ! -d node_modules ]; then
  step "npm ci (node_modules is missing)"
  npm ci
fi

step "versions"
echo "node $(node --version), npm $(npm --version)"
docker --version
dockerd --version
echo "debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"

step "our dockerd (test/image/engine.sh start)"
if ! test/image/engine.sh status; then engine_started=1; fi
test/image/engine.sh start

step "npm run test:image (CI=$CI): base images, docker build, the image's tests"
npm run test:image

step "done"
printf '==> all: %d s\n' $((SECONDS - started))
