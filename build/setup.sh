#!/usr/bin/env bash
# Ensures a Debian 12 machine has what the build and tests need. Idempotent: installs only what is
# missing and runs `apt-get update` at most once, and only when something is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --- .NET SDK (not installed by this script) ----------------------------------------------------
if ! command -v dotnet >/dev/null 2>&1; then
  fail "the .NET SDK is not on PATH. Install .NET SDK 10 (https://dot.net/install) and re-run."
fi
if ! dotnet --list-sdks 2>/dev/null | grep -q '^10\.'; then
  fail "no .NET 10 SDK found (dotnet --list-sdks: $(dotnet --list-sdks 2>/dev/null | tr '\n' ' ')). Install .NET SDK 10."
fi

# --- apt packages -------------------------------------------------------------------------------
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  fi
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || missing+=(postgresql-15)
for package in python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc; do
  installed "$package" || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  log "system packages present"
else
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "missing ${missing[*]} and apt-get is not available; install them by hand."
  fi
  if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
    fail "missing ${missing[*]}; run as root or install sudo, or install them by hand."
  fi
  log "installing ${missing[*]}"

  # Keep the packages' own services (a system redis on 6379, a postgres 'main' cluster on 5432) from
  # starting: tests run private servers on free ports. Only if no policy is in place already.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
  fi

  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
fi

# --- sanity -------------------------------------------------------------------------------------
command -v redis-server >/dev/null 2>&1 || fail "redis-server still not on PATH"
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || fail "/usr/lib/postgresql/15/bin/postgres still missing"
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  fail "running as root but there is no 'postgres' OS user to run PostgreSQL as (reinstall postgresql-15)"
fi
log "ok: $(dotnet --version 2>/dev/null || true) SDK, $(redis-server --version | awk '{print $3}'), PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')"
