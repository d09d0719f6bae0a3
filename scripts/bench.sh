#!/usr/bin/env bash
# make bench: build confab, serve it on a fresh Postgres database and on a
# fresh SQLite file, run the standard scenarios of the performance issue
# against it, alternating rounds with their references (the bare SSE
# broadcaster of `confab bench reference`, the send's SQL through pgx, SSE
# for long-poll, a 3-member group for the send to a 1,000-member one), and
# write docs/PERFORMANCE.md: every target with what was measured and by how
# much it is met or missed. Everything runs on loopback; it takes about ten
# minutes on two cores.
#
# Environment: PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres, no
# password), CONFAB_BENCH_DB (default confab_bench: dropped and created),
# CONFAB_BENCH_OUT (default docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_host=${PGHOST:-127.0.0.1} pg_port=${PGPORT:-5432} pg_user=${PGUSER:-postgres}
db=${CONFAB_BENCH_DB:-confab_bench}
pg_url="postgres://$pg_user@$pg_host:$pg_port/$db?sslmode=disable"
pg_admin="postgres://$pg_user@$pg_host:$pg_port/postgres?sslmode=disable"
out=${CONFAB_BENCH_OUT:-docs/PERFORMANCE.md}
addr=127.0.0.1:18480 ref=127.0.0.1:18481 pprof=127.0.0.1:18482

work=$(mktemp -d "${TMPDIR:-/tmp}/confab-bench.XXXXXX")
bin=$work/confab
confab_pid= ref_pid=
stop() { # pid: end a server we started and wait for it
  [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true
}
cleanup() { stop "$confab_pid"; stop "$ref_pid"; }
trap cleanup EXIT
started=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - started)) "$*" >&2; }

wait_port() { # host:port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2; return 1
}
start_confab() { # store flags...
  stop "$confab_pid"
  # A group of 10,000 needs the limits raised (its creation names 10,000
  # members in one body); registering 10,000 users at OWASP's argon2 cost
  # would take minutes nothing measures, so the bench server hashes cheaply,
  # and it takes them all from the one address the load tool has.
  "$bin" serve -addr "$addr" -pprof-addr "$pprof" -node-id bench -access-ttl 2h -log-format json \
    -max-group-members 10000 -max-body-bytes 1048576 -password-hash-memory 64 -password-hash-time 1 -register-burst 0 -sends-per-second 0 -groups-per-minute 0 -member-adds-per-minute 0 -max-streams-per-user 100000 \
    "$@" 2>>"$work/confab.log" &
  confab_pid=$!
  wait_port "$addr"
}
start_reference() {
  stop "$ref_pid"
  "$bin" bench reference -addr "$ref" >>"$work/reference.log" 2>&1 &
  ref_pid=$!
  wait_port "$ref"
}
runs=()
run() { # store/scenario, bench run flags...
  local label=$1 file
  shift
  file=$work/$(echo "$label" | tr / -).json
  say "$label"
  "$bin" bench run -json -label "$label" "$@" >"$file" 2>>"$work/bench.log"
  runs+=("$file")
}
profile() { # store/scenario: its pprof file
  echo "$work/$(echo "$1" | tr / -).pprof"
}

say "building"
go build -o "$bin" ./cmd/confab

# --- Postgres -------------------------------------------------------------
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS ${db}_w" >/dev/null
start_confab -database-url "$pg_url"
start_reference
pg="-url http://$addr -setup $work/postgres-setup.json"
# One conversation of N users, one stream each, 10 messages/s: every
# message is one log row, delivered to N streams. 10k alternates once to
# stay in the time budget.
for n in 1000 5000 10000; do
  label=postgres/fanout-$((n / 1000))k rounds=2
  [ $n -eq 10000 ] && rounds=1
  run "$label" $pg -ref "http://$ref" -users $n -streams $n -writers 2 -rate 10 -duration 5s -rounds $rounds \
    -profile-url "http://$pprof" -profile-out "$(profile "$label")"
done
# A send to the 1,000-member group of fanout-1k against one to a 3-member
# group, alternating on the same server: what a send costs as its
# conversation grows. Nobody listens (every member is checked by catching
# up afterwards), so the POST is the send alone.
run postgres/post-1k-vs-3 $pg -ref group:3 -users 1000 -streams 0 -writers 1 -rate 10 -duration 6s -rounds 2 \
  -profile-url "http://$pprof" -profile-out "$(profile postgres/post-1k-vs-3)"
# Idle memory is measured from freshly started servers.
start_confab -database-url "$pg_url"
start_reference
run postgres/idle-10k $pg -ref "http://$ref" -users 1000 -streams 10000 -writers 0 -rounds 1 -settle 5s \
  -profile-url "http://$pprof" -profile-out "$(profile postgres/idle-10k)"
# The runs that measure a single send get a fresh database of their own,
# checkpointed before each, so that autovacuum and checkpoints working
# through what the fan-out runs wrote do not weigh on them.
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS ${db}_w" -c "CREATE DATABASE ${db}_w" >/dev/null
pg_url_w="postgres://$pg_user@$pg_host:$pg_port/${db}_w?sslmode=disable"
start_confab -database-url "$pg_url_w"
pg="-url http://$addr -setup $work/postgres-w-setup.json"
checkpoint() { psql "$pg_url_w" -qc CHECKPOINT >/dev/null; }
for w in 4 16 32; do
  checkpoint
  run postgres/writes-$w $pg -ref "sql:$pg_url_w" -users $((3 * w)) -group 3 -streams 0 -writers $w -rate 0 -duration 4s -rounds 2 \
    -profile-url "http://$pprof" -profile-out "$(profile postgres/writes-$w)"
done
checkpoint
run postgres/latency $pg -ref "http://$ref" -users 10 -streams 10 -writers 1 -rate 1 -duration 10s -rounds 2
run postgres/longpoll $pg -ref sse -users 1000 -streams 0 -pollers 1000 -writers 2 -rate 10 -duration 5s -rounds 2 \
  -profile-url "http://$pprof" -profile-out "$(profile postgres/longpoll)"
# The same pollers against the bare reference's long-poll, and the bare
# reference's long-poll against its own SSE: what a request per delivery
# costs with nothing else around it.
start_reference
run postgres/longpoll-bare $pg -ref "http://$ref" -users 1000 -streams 0 -pollers 1000 -writers 2 -rate 10 -duration 5s -rounds 2
run reference/longpoll -url "http://$ref" -setup "$work/reference-setup.json" -ref sse -users 1000 -streams 0 -pollers 1000 -writers 2 -rate 10 -duration 5s -rounds 2

# --- SQLite ---------------------------------------------------------------
start_confab -sqlite-path "$work/bench.db"
start_reference
sq="-url http://$addr -setup $work/sqlite-setup.json"
run sqlite/latency $sq -ref "http://$ref" -users 10 -streams 10 -writers 1 -rate 1 -duration 10s -rounds 2
for w in 4 32; do
  run sqlite/writes-$w $sq -users $((3 * w)) -group 3 -streams 0 -writers $w -rate 0 -duration 4s -rounds 2
done
run sqlite/fanout-1k $sq -ref "http://$ref" -users 1000 -streams 1000 -writers 2 -rate 10 -duration 5s -rounds 1 \
  -profile-url "http://$pprof" -profile-out "$(profile sqlite/fanout-1k)"
cleanup
confab_pid= ref_pid=

# --- Report ---------------------------------------------------------------
say "writing $out"
profile_top() { # store/scenario: the top of its profile
  local f
  f=$(profile "$1")
  [ -s "$f" ] || return 0
  printf '### %s\n\n```\n' "$1"
  go tool pprof -top -nodecount=18 "$bin" "$f" 2>/dev/null | grep -v '^Build ID\|^File\|^Type' | head -26
  printf '```\n\n'
}
{
  cat <<HEAD
# Performance

Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), in $(($(date +%s) - started)) s;
the notes come from scripts/bench-notes.md. Every confab figure is set
against its reference measured in the same run, in alternating rounds
(confab, reference, confab, reference): absolute times on a shared
machine drift, ratios much less.

## Machine

| | |
|---|---|
| CPU | $(nproc) × $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs) |
| memory | $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null) |
| kernel | $(uname -sr) |
| Go | $(go env GOVERSION) |
| Postgres | $(psql "$pg_url" -Atc 'show server_version' 2>/dev/null) (fsync on, synchronous_commit $(psql "$pg_url" -Atc 'show synchronous_commit' 2>/dev/null), shared_buffers $(psql "$pg_url" -Atc 'show shared_buffers' 2>/dev/null)) |
| load average before | $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) |

Server, Postgres and load tool share the machine, as the issue asks.

## How to reproduce

\`\`\`
make bench        # this file
\`\`\`

or by hand, for one scenario:

\`\`\`
confab serve -addr 127.0.0.1:18480 -database-url postgres://... -pprof-addr 127.0.0.1:18482 \
  -max-group-members 10000 -max-body-bytes 1048576 -password-hash-memory 64 -password-hash-time 1 -register-burst 0 -sends-per-second 0 -groups-per-minute 0 -member-adds-per-minute 0 -max-streams-per-user 100000 &
confab bench reference -addr 127.0.0.1:18481 &
confab bench run -url http://127.0.0.1:18480 -ref http://127.0.0.1:18481 -users 1000 -streams 1000 -writers 2 -rate 10 -duration 6s
confab bench sql -database-url postgres://... -writers 4     # the send's SQL alone
\`\`\`

The exact command of every scenario is under its table below (\`\$WORK\` is
the temporary directory scripts/bench.sh works in).

HEAD
  "$bin" bench report "${runs[@]}"
  cat scripts/bench-notes.md
  printf '\n## Profiles\n\nCPU profiles of the first confab round of each scenario (the writers'"'"' span), heap for idle.\n\n'
  for s in postgres/fanout-10k postgres/post-1k-vs-3 postgres/writes-32 postgres/longpoll postgres/idle-10k; do profile_top "$s"; done
} >"$out.tmp"
# The commands name the script's temporary directory as $WORK: the report
# speaks of the product, not of the machine it ran on.
sed -i "s|$work|\$WORK|g" "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$work"
say "done"
