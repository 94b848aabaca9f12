#!/usr/bin/env bash
# Installs the real peers the test suites start, from Debian 12's packages: Postfix (private
# instances, smtp-sink, smtp-source), swaks with STARTTLS and AUTH, dnsmasq and dig, dkimpy,
# openssl, promtool and Prometheus, Chromium. The one list of them: `npm run test:all` (scripts/test-all.sh) and CI (.ci/run) both
# run this script, so what a newcomer installs and what CI tests with cannot drift.
#
# Needs root for apt-get. Installs only what is missing; with nothing missing it changes nothing
# and needs no root. Not root and something missing: says what, and the command to run.
# Starts no service: package scripts are kept from starting Debian's own Postfix.
set -euo pipefail

PACKAGES=(
  postfix                      # private Postfix instances, smtp-sink, smtp-source
  swaks                        # a real SMTP client ...
  libio-socket-ssl-perl        # ... with STARTTLS
  libnet-ssleay-perl
  libauthen-sasl-perl          # ... and AUTH
  dnsmasq-base                 # a real DNS server on loopback (MX, TXT, null MX)
  bind9-dnsutils               # dig
  python3-dkim                 # an independent DKIM verifier (and python3: DSN parsing, a pseudo-terminal)
  openssl                      # self-signed certificates for STARTTLS tests
  prometheus                   # promtool and a private Prometheus for the alerts and the dashboard
  chromium                     # a real browser for the pages people open (unsubscribe), driven by puppeteer-core
)

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test peers: all ${#PACKAGES[@]} packages installed (${PACKAGES[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  {
    echo "test peers: missing ${missing[*]}; installing them needs root (apt-get). Run:"
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    echo "or the whole set-up and suite as root:  sudo env PATH=\"\$PATH\" npm run test:all"
  } >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "==> apt-get update"
apt-get update
echo "==> preseed debconf: Postfix as 'Local only', so its install asks nothing"
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
# Keep package scripts from starting Debian's own Postfix: the tests start private instances.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  echo "==> blocking service starts during the install ($policy, removed after)"
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
echo "==> apt-get install ${missing[*]}"
apt-get install -y "${missing[@]}"
