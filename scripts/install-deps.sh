#!/usr/bin/env bash
# Installs the Debian packages the build, tests, demo and benchmarks need.
# Idempotent: a package already present is skipped, and apt is not touched at all when nothing is
# missing. Usage: scripts/install-deps.sh [build|test|bench]  (each level includes the previous).
set -euo pipefail

level=${1:-test}
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev liburcu-dev libpq-dev libjansson-dev
      libcurl4-openssl-dev)
case "$level" in
  build) ;;
  test) pkgs+=(libcmocka-dev postgresql-15 postgresql-client-15 curl python3 clang-format) ;;
  bench) pkgs+=(libcmocka-dev postgresql-15 postgresql-client-15 curl python3 wrk nginx-light gnuplot-nox python3-psycopg2 linux-perf) ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
