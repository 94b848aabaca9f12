#!/usr/bin/env bash
# `npm run test:all`: on a fresh Debian 12 machine, all the set-up the tests need, then all of
# them. Installs the real peers (scripts/test-peers.sh), the npm dependencies if they are not
# there, then runs with CI set, so a suite whose peer is missing fails instead of being skipped:
#   1. npm test: lint, types and the whole vitest suite against the real mail peers (~8 min);
#   2. npm run test:cluster: builds kube-apiserver and kube-controller-manager v1.20.2 from
#      Debian's source once (~5 min, then cached), and runs the operator on them (~3 min);
#   3. test/image/ci.sh: installs Docker's engine, builds the image and runs it (~5 min).
# CI (.ci/run) runs this same script, then the suites again on the image's Node.
#
# Needs root: apt-get installs the peers, the private Postfix instances, the API server and
# dockerd run as root. `npm test` alone is the quick loop once the peers are installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  {
    echo "npm run test:all needs root: apt-get installs the test peers, and the private Postfix instances run as root."
    echo "Run:  sudo env PATH=\"\$PATH\" npm run test:all"
    echo "(npm test runs as you, skipping each suite whose peer is missing or needs root, and says which.)"
  } >&2
  exit 1
fi

echo "==> the test peers (scripts/test-peers.sh)"
scripts/test-peers.sh

if [ ! -d node_modules ]; then
  echo "==> npm ci"
  npm ci
fi

export CI="${CI:-true}"
echo "==> npm test (CI=$CI: a missing peer fails its suite) on Node $(node --version)"
npm test

echo "==> npm run test:cluster: kube-apiserver and kube-controller-manager v1.20.2 (built from Debian's source once), then the operator on them"
cluster_start=$SECONDS
test/cluster/build-kube.sh
echo "built (or reused) in $((SECONDS - cluster_start)) s"
npm run test:cluster
echo "test:cluster, build included: $((SECONDS - cluster_start)) s"

echo "==> test/image/ci.sh: the image built and run in a real Docker engine"
test/image/ci.sh
