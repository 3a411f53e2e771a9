# A throwaway PostgreSQL cluster for the tests: sourced by .ci/run.
#
# start_postgres installs PostgreSQL from the Debian packages if it is missing, makes a
# cluster in a temporary directory, starts it on a free loopback port and exports
# OPPCORE_TEST_POSTGRES (its URL) and OPPCORE_TEST_POSTGRES_CTL (its pg_ctl command line);
# stop_postgres stops it and removes the directory.

_pg_bin() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
  local started bin run_as port
  started=$(date +%s.%N)
  bin=$(_pg_bin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "ci: installing PostgreSQL from the Debian packages"
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    else
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    fi
    bin=$(_pg_bin)
  fi
  PG_ROOT=$(mktemp -d)
  run_as=""
  if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
    run_as="runuser -u postgres --"
    chown postgres "$PG_ROOT"
  fi
  $run_as "$bin/initdb" -D "$PG_ROOT/data" -A trust -U oppcore -E UTF8 >/dev/null
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PG_CTL="$run_as $bin/pg_ctl -D $PG_ROOT/data -l $PG_ROOT/log -w -o '-p $port -k $PG_ROOT -c listen_addresses=127.0.0.1'"
  eval "$PG_CTL start" >/dev/null
  export OPPCORE_TEST_POSTGRES="postgresql://oppcore@127.0.0.1:$port/postgres"
  export OPPCORE_TEST_POSTGRES_CTL="$PG_CTL"
  echo "ci: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, started in $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s"
}

stop_postgres() {
  if [ -n "${PG_CTL:-}" ]; then
    eval "$PG_CTL stop -m fast" >/dev/null 2>&1 || true
  fi
  if [ -n "${PG_ROOT:-}" ]; then
    rm -rf "$PG_ROOT"
  fi
}
