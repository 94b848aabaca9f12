#!/usr/bin/env bash
# Builds a real kube-apiserver and kube-controller-manager (v1.20.2) from Debian bookworm's own
# `kubernetes` source package, for `npm run test:cluster`. No Kubernetes binary or image can be
# downloaded on the machines this project is built on; Debian's source package is the whole
# v1.20.2 tree with vendor/, and it builds with Debian's Go 1.19 (about 5 minutes on 2 cores).
#
#   test/cluster/build-kube.sh            # builds once; later runs reuse the binaries
#   test/cluster/build-kube.sh --or-skip  # outside CI, a build that cannot run is a loud warning
#                                         # (the suites then skip), not a failure
#
# Output: $MF_KUBE_HOME/bin/{kube-apiserver,kube-controller-manager}
# (default ~/.cache/mailfleet/kube-v1.20.2). As root, it installs what it needs with apt-get
# (a deb-src line for the machine's own Debian mirror, golang-1.19-go, etcd-server, Debian's
# reflect2); otherwise it says what to install.
set -euo pipefail

VERSION=v1.20.2
HOME_DIR="${MF_KUBE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet/kube-$VERSION}"
BIN="$HOME_DIR/bin"
GO=/usr/lib/go-1.19/bin/go
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
PACKAGES=(golang-1.19-go etcd-server golang-github-modern-go-reflect2-dev dpkg-dev)

OR_SKIP=0
[ "${1:-}" = "--or-skip" ] && [ -z "${CI:-}" ] && OR_SKIP=1

say() { printf '[build-kube] %s\n' "$*" >&2; }
die() {
  printf '[build-kube] error: %s\n' "$*" >&2
  if [ "$OR_SKIP" = 1 ]; then printf '\n!!! no real kube-apiserver: the real-cluster suites will be SKIPPED (CI runs them)\n\n' >&2; exit 0; fi
  exit 1
}
trap 'die "the step at line $LINENO failed"' ERR

# Both version packages, as hack/lib/version.sh stamps them: component-base's answers --version,
# client-go's answers the API server's /version.
LDFLAGS="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LDFLAGS="$LDFLAGS -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20 -X $pkg.gitTreeState=clean"
done
# The binaries are reused while they were built with these flags.
STAMP="$VERSION $LDFLAGS"
works() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$VERSION"; }
if works "$BIN/kube-apiserver" && works "$BIN/kube-controller-manager" && [ "$(cat "$BIN/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  say "reusing $BIN ($("$BIN/kube-apiserver" --version))"
  exit 0
fi

start=$(date +%s)
mkdir -p "$HOME_DIR"

# --- what the build needs from Debian ------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done

have_deb_src() { grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; }

if [ "${#missing[@]}" -gt 0 ] || ! have_deb_src; then
  [ "$(id -u)" -eq 0 ] || die "needs ${missing[*]:-} and a deb-src line for Debian; run me as root, or: sudo apt-get install -y ${missing[*]:-} (and add deb-src for bookworm)"
  if ! have_deb_src; then
    # The same mirror and suites as the machine's deb lines, for source packages.
    src=/etc/apt/sources.list.d/mailfleet-deb-src.sources
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src"
    elif [ -f /etc/apt/sources.list ]; then
      grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > /etc/apt/sources.list.d/mailfleet-deb-src.list
    else
      die "no Debian apt source found to derive a deb-src line from"
    fi
    say "added deb-src lines for the machine's Debian mirror"
  fi
  say "apt-get update; apt-get install ${PACKAGES[*]}"
  apt-get update -qq
  # etcd-server's package would start Debian's own etcd on 2379: no service starts during the install.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade "${PACKAGES[@]}" >/dev/null
fi
[ -x "$GO" ] || die "$GO missing (golang-1.19-go)"
[ -d "$REFLECT2" ] || die "$REFLECT2 missing (golang-github-modern-go-reflect2-dev)"

# --- the source ----------------------------------------------------------------------------
GOPATH_DIR="$HOME_DIR/gopath"
TREE="$GOPATH_DIR/src/k8s.io/kubernetes"
if [ ! -f "$TREE/cmd/kube-apiserver/apiserver.go" ]; then
  say "apt-get source kubernetes (Debian bookworm's, $VERSION)"
  dl="$HOME_DIR/download"
  rm -rf "$dl" && mkdir -p "$dl"
  (cd "$dl" && apt-get source --download-only kubernetes >/dev/null 2>&1) || die "apt-get source kubernetes failed: is there a deb-src line for bookworm?"
  orig=$(ls "$dl"/kubernetes_*.orig.tar.gz)
  mkdir -p "$(dirname "$TREE")"
  rm -rf "$TREE" "$TREE.tmp" && mkdir -p "$TREE.tmp"
  tar -xzf "$orig" -C "$TREE.tmp" --strip-components=1
  # The vendored reflect2 1.0.1 breaks on Go >= 1.18; Debian's 1.0.2 is the fix.
  rm -rf "$TREE.tmp/vendor/github.com/modern-go/reflect2"
  cp -r "$REFLECT2" "$TREE.tmp/vendor/github.com/modern-go/reflect2"
  rm -f "$TREE.tmp/vendor/github.com/modern-go/reflect2/go.mod"
  mv "$TREE.tmp" "$TREE"
  rm -rf "$dl"
fi

export GOPATH="$GOPATH_DIR" GOCACHE="$HOME_DIR/gocache" GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
export PATH="/usr/lib/go-1.19/bin:$PATH"
cd "$TREE"

# --- generated OpenAPI definitions (what `make` would generate first) -----------------------
OPENAPI_OUT=pkg/generated/openapi/zz_generated.openapi.go
if [ ! -f "$OPENAPI_OUT" ]; then
  say "building openapi-gen and generating $OPENAPI_OUT"
  go build -o "$HOME_DIR/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # As build/root/Makefile.generated_files does: every directory with a +k8s:openapi-gen tag,
  # staging named as vendor, without the code-generator and sample-apiserver examples.
  dirs=$(find -H . \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | sed 's|^./staging/src|vendor|; s|^./||' \
    | xargs grep -l '^// *+k8s:' \
    | xargs grep -l '+k8s:openapi-gen=' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  "$HOME_DIR/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$HOME_DIR/openapi-violations.report" 2> "$HOME_DIR/openapi-gen.log" \
    || { tail -20 "$HOME_DIR/openapi-gen.log" >&2; die "openapi-gen failed (log: $HOME_DIR/openapi-gen.log)"; }
fi

# --- the two binaries ----------------------------------------------------------------------
say "go build kube-apiserver kube-controller-manager (a few minutes the first time)"
mkdir -p "$BIN"
for cmd in kube-apiserver kube-controller-manager; do
  go build -ldflags "$LDFLAGS" -o "$BIN/$cmd.tmp" "./cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
works "$BIN/kube-apiserver" || die "the built kube-apiserver does not report $VERSION"
echo "$STAMP" > "$BIN/.stamp"
say "built $BIN in $(( $(date +%s) - start )) s: $("$BIN/kube-apiserver" --version)"
