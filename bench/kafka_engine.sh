#!/usr/bin/env bash
# sluice against ClickHouse's own Kafka engine: CPU per event for the same rows into the same raw
# table, on ClickHouse 18.16 (the rig's `clickhouse_compat`). A benchmark: it prints what it
# measured and asserts nothing.
#
# usage: bench/kafka_engine.sh SUFFIX
#   SUFFIX  a copy kept by `SLUICE_CLICKHOUSE_URL=$SLUICE_CLICKHOUSE_COMPAT_URL \
#           target/release/sluice bench --projection analytics --backlog 300000 --rate 0 --keep`
#           (it prints `kept the isolated copy (suffix benchNNN)`)
#
# 18.16's engine reads no Avro, so it is given the rows sluice wrote into the copy's JSON-only raw
# table (`events_json_<suffix>`), as JSONEachRow on a topic of their own (12 partitions): the same
# events, the same columns, into a table with the same definition. Then, one after the other:
#   engine  a Kafka table and a materialized view into that table; CPU of the server from creating
#           the view until every row is there;
#   sluice  `sluice work` draining the copy's `analytics_json` projection with a fresh group (Avro
#           from Kafka, decoded and written as RowBinary); CPU of the worker and of the server from
#           its start until its lag is 0.
# CPU comes from /proc/<pid>/stat (user + system). The server also merges in the background, so
# run it on an otherwise idle rig and repeat.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
suffix="${1:?usage: bench/kafka_engine.sh SUFFIX (of a copy kept by sluice bench --keep)}"
set -a
# shellcheck disable=SC1091
. .dev/env
set +a
ch="${SLUICE_CLICKHOUSE_COMPAT_URL:?ClickHouse 18.16 of the rig: run dev/up}"
db="sluice_${suffix}"
raw="events_json_${suffix}"
topology="${TMPDIR:-/tmp}/sluice-${suffix}/topology.toml"
[ -f "$topology" ] || { echo "no kept copy at $topology" >&2; exit 2; }
run="$(date +%s)"
topic="engine_${suffix}_${run}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

q() { curl -sS --fail-with-body "$ch/" --data-binary "$1"; }
server_pid() { pgrep -f "clickhouse_compat/etc" | head -1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kafka() { java -cp ".dev/kafka/libs/*" "$@"; }

events="$(q "SELECT count() FROM $db.$raw")"
[ "$events" -gt 0 ] || { echo "$db.$raw is empty" >&2; exit 2; }
columns="$(q "SELECT name FROM system.columns WHERE database = '$db' AND table = '$raw' AND default_kind = ''" | paste -sd, -)"
typed="$(q "SELECT name, type FROM system.columns WHERE database = '$db' AND table = '$raw' AND default_kind = '' FORMAT TabSeparatedRaw" |
  awk -F '\t' -v q='`' '{printf "%s%s%s%s %s", (NR > 1 ? ", " : ""), q, $1, q, $2}')"
# Columns the server fills in itself (`ingested_at`): 18.16 does not fill them for a view's rows.
defaults="$(q "SELECT name, default_expression FROM system.columns WHERE database = '$db' AND table = '$raw' AND default_kind = 'DEFAULT' FORMAT TabSeparatedRaw" |
  awk -F '\t' -v q='`' '{printf ", %s AS %s%s%s", $2, q, $1, q}')"
echo "kafka_engine: $events rows of $db.$raw; columns $columns$defaults" >&2

# The rows as JSONEachRow, for a topic of their own.
curl -sS --fail-with-body "$ch/?output_format_json_quote_64bit_integers=0" \
  --data-binary "SELECT $columns FROM $db.$raw FORMAT JSONEachRow" > "$work/rows.json"
kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$SLUICE_KAFKA_BROKERS" --create --topic "$topic" \
  --partitions 12 --replication-factor 1 > /dev/null
# The engine: a Kafka table, and a view into a table defined as the raw one; the rows are
# produced once the view is there (18.16's engine starts a new group at the end of the topic).
target="engine_target_${run}"
ddl="$(q "SHOW CREATE TABLE $db.$raw FORMAT TabSeparatedRaw")"
q "${ddl//$raw/$target}"
q "CREATE TABLE $db.engine_queue_${run} ($typed) ENGINE = Kafka('$SLUICE_KAFKA_BROKERS', '$topic', '${topic}_g', 'JSONEachRow')"
pid="$(server_pid)"
c0="$(cpu_ticks "$pid")"; t0="$(date +%s.%N)"
q "CREATE MATERIALIZED VIEW $db.engine_mv_${run} TO $db.$target AS SELECT $columns$defaults FROM $db.engine_queue_${run}"
kafka org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$SLUICE_KAFKA_BROKERS" --topic "$topic" \
  --producer-property linger.ms=20 --producer-property batch.size=1000000 --producer-property compression.type=lz4 \
  < "$work/rows.json"
echo "kafka_engine: $(wc -l < "$work/rows.json") rows on $topic" >&2

deadline=$((SECONDS + 300))
until [ "$(q "SELECT count() FROM $db.$target")" -ge "$events" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "the engine wrote $(q "SELECT count() FROM $db.$target") of $events rows in 300 s" >&2; exit 1; }
  sleep 0.2
done
c1="$(cpu_ticks "$pid")"; t1="$(date +%s.%N)"
q "DROP TABLE $db.engine_mv_${run}"
q "DROP TABLE $db.engine_queue_${run}"

# sluice: the JSON-only projection of the copy, drained again by one worker with a fresh group.
projection="analytics_json_${suffix}"
sed "s/^\(\[projections\.$projection\]\)$/\1\ngroup = \"kafka-engine-$run\"/" "$topology" > "$work/topology.toml"
SLUICE_CLICKHOUSE_URL="$ch" target/release/sluice work --projection "$projection" --topology "$work/topology.toml" \
  > "$work/work.log" 2>&1 &
worker=$!
s0="$(cpu_ticks "$pid")"; u0="$(date +%s.%N)"
lag() {
  target/release/sluice lag --topology "$work/topology.toml" --projection "$projection" --json 2> /dev/null |
    python3 -c 'import json, sys; print(list(json.load(sys.stdin)["projections"].values())[0]["lag_messages"])' 2> /dev/null || echo ?
}
deadline=$((SECONDS + 300))
until [ "$(lag)" = 0 ]; do
  kill -0 "$worker" 2> /dev/null || { cat "$work/work.log" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { kill "$worker"; echo "sluice did not drain in 300 s" >&2; exit 1; }
  sleep 0.2
done
w1="$(cpu_ticks "$worker")"; s1="$(cpu_ticks "$pid")"; u1="$(date +%s.%N)"
kill -INT "$worker"; wait "$worker" || true

python3 - "$events" "$t0" "$t1" "$c0" "$c1" "$u0" "$u1" "$s0" "$s1" "$w1" <<'PY'
import sys
n, t0, t1, c0, c1, u0, u1, s0, s1, w1 = (float(a) for a in sys.argv[1:])
us = lambda ticks: ticks / 100 * 1e6 / n
print(f"\n{'WHO':<8} {'EVENTS':>8} {'EVENTS/S':>9} {'SERVER µs/event':>16} {'WORKER µs/event':>16} {'TOTAL µs/event':>15}")
print(f"{'engine':<8} {n:>8.0f} {n / (t1 - t0):>9.0f} {us(c1 - c0):>16.1f} {'-':>16} {us(c1 - c0):>15.1f}")
print(f"{'sluice':<8} {n:>8.0f} {n / (u1 - u0):>9.0f} {us(s1 - s0):>16.1f} {us(w1):>16.1f} {us(s1 - s0 + w1):>15.1f}")
print("(sluice's clock and CPU include its start and group join; the engine's clock runs while the"
      " console producer writes the rows, and includes its 7.5 s flush interval)")
PY
