#!/usr/bin/env bash
# Ensures a Debian 12 machine has what the build, the tests and `build/run.sh` need, then verifies the
# files and tools themselves — a package name in dpkg's list is not proof that what the build reads is
# there (Debian's protobuf-compiler without its recommended libprotobuf-dev has no google/protobuf/*.proto).
# Idempotent: installs only what is missing and runs `apt-get update` at most once, only when needed.
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

PGBIN=/usr/lib/postgresql/15/bin
SYSTEM_PYTHON=/usr/bin/python3
WELL_KNOWN=/usr/include/google/protobuf

# What the suite reads or runs, each with the Debian package that provides it. A check is a path that
# must exist (and be executable when it is a program), "python:<module>" for the system interpreter, or
# "cmd:<program>" for a program on PATH (node and npm: the Node worker library is built with them). promtool (Debian's
# prometheus package) unit-tests the alerting rules in build/prometheus/; the package's own server is kept from starting.
# Chromium: the end-to-end browser test drives Debian's /usr/bin/chromium with Playwright (which never downloads a
# browser here).
checks=(
  "$PGBIN/postgres|postgresql-15"
  "$PGBIN/initdb|postgresql-15"
  "$PGBIN/pg_ctl|postgresql-15"
  "$PGBIN/pg_dump|postgresql-client-15"
  "$PGBIN/pg_restore|postgresql-client-15"
  "/usr/bin/pg_config|postgresql-common"
  "/usr/bin/redis-server|redis-server"
  "/usr/bin/redis-cli|redis-tools"
  "/usr/bin/protoc|protobuf-compiler"
  "/usr/bin/grpc_python_plugin|protobuf-compiler-grpc"
  "$WELL_KNOWN/descriptor.proto|libprotobuf-dev"
  "$WELL_KNOWN/timestamp.proto|libprotobuf-dev"
  "$WELL_KNOWN/duration.proto|libprotobuf-dev"
  "$WELL_KNOWN/struct.proto|libprotobuf-dev"
  "$WELL_KNOWN/empty.proto|libprotobuf-dev"
  "$WELL_KNOWN/wrappers.proto|libprotobuf-dev"
  "$WELL_KNOWN/any.proto|libprotobuf-dev"
  "$SYSTEM_PYTHON|python3"
  "python:grpc|python3-grpcio"
  "python:google.protobuf|python3-protobuf"
  "/usr/bin/promtool|prometheus"
  "/usr/bin/chromium|chromium"
  "cmd:node|nodejs"
  "cmd:npm|npm"
)

check() {
  local target=$1
  case "$target" in
    python:*) [[ -x $SYSTEM_PYTHON ]] && "$SYSTEM_PYTHON" -c "import ${target#python:}" >/dev/null 2>&1 ;;
    cmd:*) command -v "${target#cmd:}" >/dev/null 2>&1 ;;
    */bin/*|*/sbin/*) [[ -f $target && -x $target ]] ;;
    *) [[ -f $target && -r $target ]] ;;
  esac
}

missing_files=() missing_packages=()
scan() {
  missing_files=() missing_packages=()
  local entry target package
  for entry in "${checks[@]}"; do
    target=${entry%%|*} package=${entry##*|}
    if ! check "$target"; then
      missing_files+=("$target ($package)")
      [[ " ${missing_packages[*]} " == *" $package "* ]] || missing_packages+=("$package")
    fi
  done
}

scan
if [[ ${#missing_packages[@]} -eq 0 ]]; then
  log "system packages present"
else
  SUDO=()
  if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "missing: ${missing_files[*]}; apt-get is not available: install ${missing_packages[*]} by hand."
  fi
  if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
    fail "missing: ${missing_files[*]}; run as root or install sudo, or install ${missing_packages[*]} by hand."
  fi
  log "missing: ${missing_files[*]}"
  log "installing ${missing_packages[*]}"

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
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing_packages[@]}"

  scan
  if [[ ${#missing_files[@]} -gt 0 ]]; then
    fail "still missing after installing ${missing_packages[*]}: ${missing_files[*]}"
  fi
fi

# --- the tools work, not only exist ------------------------------------------------------------------
# protoc must resolve the well-known imports our contracts use (google/api/annotations.proto imports
# google/protobuf/descriptor.proto): compile one contract to a scratch directory.
scratch=$(mktemp -d)
if ! protoc_out=$(/usr/bin/protoc -I protos --descriptor_set_out="$scratch/check.pb" google/api/annotations.proto 2>&1); then
  rm -rf "$scratch"
  fail "protoc cannot compile protos/google/api/annotations.proto: $protoc_out"
fi
rm -rf "$scratch"
"$PGBIN/postgres" --version >/dev/null 2>&1 || fail "$PGBIN/postgres does not run"
# The Node worker library (services/workers/node) needs Node 18 or later and a working npm.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[[ $node_major -ge 18 ]] || fail "node $(node --version 2>/dev/null || echo '(does not run)') is too old for services/workers/node: Node 18 or later is needed"
npm --version >/dev/null 2>&1 || fail "npm does not run"
/usr/bin/redis-server --version >/dev/null 2>&1 || fail "/usr/bin/redis-server does not run"
/usr/bin/promtool --version >/dev/null 2>&1 || fail "/usr/bin/promtool does not run (the alerting rules' tests need it)"
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  fail "running as root but there is no 'postgres' OS user to run PostgreSQL as (reinstall postgresql-15)"
fi
log "ok: $(dotnet --version 2>/dev/null || true) SDK, redis $(/usr/bin/redis-server --version | awk '{print $3}'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), $(/usr/bin/protoc --version), python $("$SYSTEM_PYTHON" -c 'import grpc; print("grpcio", grpc.__version__)'), node $(node --version), npm $(npm --version)"
