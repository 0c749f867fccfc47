#!/usr/bin/env bash
# Runs the suite's PostgreSQL 15 cluster in the foreground for the AppHost (an Aspire executable resource):
#   postgres.sh <root directory> <port>
# Initialises <root>/data once (superuser password from $LIFELINE_PG_SUPERUSER_PASSWORD, SCRAM, checksums), stops a
# postmaster an earlier, killed AppHost left running on it, then runs `postgres` listening on 127.0.0.1 only. As root
# it runs as the `postgres` OS user (PostgreSQL refuses to run as root). SIGTERM/SIGINT from DCP become a fast
# shutdown (SIGINT to the postmaster: disconnect clients, checkpoint, exit), not a smart one that waits for clients.
set -euo pipefail

root=${1:?root directory}
port=${2:?port}
data=$root/data
os_user=postgres

fail() { printf 'postgres.sh: %s\n' "$*" >&2; exit 2; }

bindir=""
for candidate in "${LIFELINE_PG_BINDIR:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
  if [[ -n $candidate && -x $candidate/postgres && -x $candidate/initdb ]]; then bindir=$candidate; break; fi
done
[[ -n $bindir ]] || fail "PostgreSQL server binaries (postgres, initdb) not found in \$LIFELINE_PG_BINDIR, /usr/lib/postgresql/15/bin or \`pg_config --bindir\`: run build/setup.sh"

as_server() {
  if [[ $(id -u) -eq 0 ]]; then setpriv --reuid="$os_user" --regid="$os_user" --init-groups -- "$@"; else "$@"; fi
}

mkdir -p "$root"
if [[ $(id -u) -eq 0 ]]; then
  chown "$os_user:$os_user" "$root"
  as_server test -w "$root" -a -x "$root" \
    || fail "the '$os_user' OS user cannot reach $root (a parent directory not searchable by others?); choose another --data-dir"
fi
chmod 700 "$root"

# A postmaster left behind by an AppHost that was killed outright holds the data directory: stop it first.
if [[ -f $data/postmaster.pid ]]; then
  leftover=$(head -n 1 "$data/postmaster.pid" || true)
  if [[ $leftover =~ ^[0-9]+$ ]] && kill -0 "$leftover" 2>/dev/null && tr '\0' ' ' < "/proc/$leftover/cmdline" | grep -q postgres; then
    echo "postgres.sh: stopping the PostgreSQL (pid $leftover) an earlier run left on $data"
    as_server "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 || true
  fi
fi

if [[ ! -f $data/PG_VERSION ]]; then
  if [[ -d $data ]] && [[ -n $(ls -A "$data") ]]; then
    fail "$data is not empty but holds no PostgreSQL cluster (no PG_VERSION); delete it to start afresh"
  fi
  [[ -n ${LIFELINE_PG_SUPERUSER_PASSWORD:-} ]] || fail "LIFELINE_PG_SUPERUSER_PASSWORD is not set (the AppHost sets it from secrets.json)"
  pwfile=$root/initdb.pw
  (umask 077; printf '%s\n' "$LIFELINE_PG_SUPERUSER_PASSWORD" > "$pwfile")
  [[ $(id -u) -ne 0 ]] || chown "$os_user:$os_user" "$pwfile"
  trap 'rm -f "$pwfile"' EXIT
  as_server "$bindir/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=peer \
    -E UTF8 --locale=C --data-checksums --no-instructions
  rm -f "$pwfile"
  echo "postgres.sh: initialised a new PostgreSQL cluster in $data"
fi
unset LIFELINE_PG_SUPERUSER_PASSWORD

# Started directly (setpriv execs postgres), so $! is the postmaster itself and the trap below signals it.
as_user=()
[[ $(id -u) -ne 0 ]] || as_user=(setpriv --reuid="$os_user" --regid="$os_user" --init-groups --)
"${as_user[@]}" "$bindir/postgres" -D "$data" -p "$port" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
  -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
  -c max_connections=300 -c logging_collector=off \
  -c wal_level=logical -c max_replication_slots=16 -c max_wal_senders=16 &
server=$!
trap 'kill -INT "$server" 2>/dev/null || true' TERM INT
status=0
while kill -0 "$server" 2>/dev/null; do
  wait "$server" || status=$?
done
exit "$status"
