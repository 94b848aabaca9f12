#!/usr/bin/env bash
# `npm run test:all`: on a fresh Debian 12 machine, all the set-up the test suite needs, then all
# of it. Installs the real peers (scripts/test-peers.sh), the npm dependencies if they are not
# there, then runs `npm test` with CI set, so a suite whose peer is missing fails instead of
# being skipped. CI (.ci/run) runs this same script.
#
# Needs root: apt-get installs the peers, and the private Postfix instances run as root. `npm
# test` alone is the quick loop once the peers are installed.
#
# Not included (they need minutes and more than packages): npm run test:cluster (builds and runs
# a kube-apiserver) and npm run test:image (a Docker engine); .ci/run runs both after this.
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
