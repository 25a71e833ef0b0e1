#!/usr/bin/env bash
# The benchmark suite: the service and the cluster side by side with the baselines that bound
# them (pgbench running the service's transaction, nginx answering a static 200), in one run on
# this machine. Results: one JSON line per measurement in $OUT/results.jsonl, and the table with
# ratios (scripts/bench/report.py) in $OUT/summary.md.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/bench/run.sh [--only SECTION[,SECTION...]] [--help]

Sections, in order (all by default; about fifteen minutes on 2 cores):
  disk       the disk alone: an 8 KiB write and fdatasync 200 times a second (what a commit
             waits for), its slowest of each second; every fixed-rate run also probes the disk
             beside it (scripts/bench/fsync_probe.py)
  hot        the table that fits in memory (the bot's is small): pgbench (the minimal durable
             transaction, scripts/bench/minimal.pgbench.sql, and the service's own) and one
             instance on the same number of avatars, each on a fresh database, repeated
             HOT_REPEATS times (the target's rows: median to median, and the spread of each)
  pgbench    the ingest transaction in pgbench, $CONNECTIONS connections (durable-write ceiling)
  single     one instance: saturation (HMAC, ED25519, HTTP/2, redeliveries, bad signatures),
             latency at half the saturation rate, CPU per request by process, RSS
  payload    one instance at saturation with larger callbacks
  rows       progress updates against 1 thousand vs 1 million avatars
  cluster    nginx static 200 (the proxy's ceiling) vs the cluster through nginx TLS; its tail
             at half its saturation beside pgbench's at the same rate; end-to-end time at
             E2E_RATE completions a second (answer, avatar row COMPLETED, stream entry)
  verify     cargo bench: signature checks and parsing per request
  callgrind  instructions per callback in the instance (valgrind), and where they go
  filecopy   a 200 MB file CDN -> S3, with RSS (scripts/bench/file-copy.sh)
  console    the console's pages (first, next, filtered, body search) over CONSOLE_ROWS stored
             deliveries, p50/p95 each (scripts/bench/console.py); not in the default run
Settings (environment, defaults shown):
  DURATION=$DURATION   measured seconds of each saturation run (fixed-rate runs: the same)
  CONNECTIONS=$CONNECTIONS  concurrent connections of the load generator and pgbench
  OUT=<target/bench/DATE>  where results go
  HOT_REPEATS=$HOT_REPEATS   repetitions of the hot-table runs
  E2E_RATE=$E2E_RATE     completions a second of the cluster's end-to-end run
  BENCH_API_BIN=<this tree's release build>   the webhook-api binary to measure
  CONSOLE_ROWS=${CONSOLE_ROWS:-1000000}   deliveries stored before the console's pages are timed
                 (10000000: about 40 minutes to store and index on 2 cores)
  EVENTS_ROWS=${EVENTS_ROWS:-0}   webhook_events rows the single-instance database starts with (FAL
                 completions of about 1 KB each, received over the last 180 days): the same run
                 beside a large table
  AVATARS_SCHEMA=$AVATARS_SCHEMA   the avatars table the databases start with: own (the service
                       creates it) or bot-live (the bot's live schema, native enums and json:
                       services/webhook-api/tests/fixtures/bot/live_schema.sql)
Needs: scripts/dev/deps.sh (PostgreSQL, Redis, S3), nginx, valgrind, pgbench (installed when
missing, from Debian's packages).
USAGE
}

DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-32}
HOT_REPEATS=${HOT_REPEATS:-3}
E2E_RATE=${E2E_RATE:-100}
AVATARS_SCHEMA=${AVATARS_SCHEMA:-own}
EVENTS_ROWS=${EVENTS_ROWS:-0}
[[ "$EVENTS_ROWS" =~ ^[0-9]+$ ]] || { echo "run.sh: EVENTS_ROWS must be a number" >&2; exit 2; }
[[ "$E2E_RATE" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: E2E_RATE must be a whole number above 0" >&2; exit 2; }
case "$AVATARS_SCHEMA" in
  own|bot-live) ;;
  *) echo "run.sh: AVATARS_SCHEMA=$AVATARS_SCHEMA: expected own or bot-live" >&2; exit 2 ;;
esac
ALL_SECTIONS=disk,hot,pgbench,single,payload,rows,cluster,verify,callgrind,filecopy
sections=$ALL_SECTIONS
while (($#)); do
  case "$1" in
    --only) sections=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
wants() { [[ ",$sections," == *",$1,"* ]]; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
OUT=${OUT:-$target_dir/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
log() { echo "bench: $*" >&2; }
record() { echo "$1" >>"$results"; } # one JSON object

missing=()
for need in cluster:nginx:nginx-light callgrind:valgrind:valgrind pgbench:pgbench:postgresql-contrib; do
  IFS=: read -r section tool package <<<"$need"
  if wants "$section" && ! command -v "$tool" >/dev/null; then missing+=("$package"); fi
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

deps_env=$(scripts/dev/deps.sh)
admin_url=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
redis_url=$(sed -n 's/^REDIS_URL=//p' <<<"$deps_env")
while IFS= read -r line; do
  [[ "$line" == MINIO_* ]] && export "${line?}"
done <<<"$deps_env"

log "building release binaries"
# One at a time: built together, cargo would unify their dependencies' features and rebuild
# webhook-api (and aws-sdk-s3) differently from `cargo build -p webhook-api` everywhere else.
cargo build --release -q -p webhook-api
cargo build --release -q -p webhook-loadgen
# BENCH_API_BIN: another build of the instance (an earlier commit's), for before/after figures.
api_bin=${BENCH_API_BIN:-$target_dir/release/webhook-api}
loadgen="$target_dir/release/webhook-loadgen"

work=$(mktemp -d)
pids=()
databases=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${cluster_dir:-}" ]]; then CLUSTER_DIR=$cluster_dir scripts/dev/cluster.sh down >/dev/null 2>&1 || true; fi
  for db in "${databases[@]}"; do
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  redis-cli -u "$redis_url" --scan --pattern 'bench:*' | xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

export WEBHOOK_SECRET=bench-hmac-secret # the load generator's HMAC secret
jwks_port=18490
"$loadgen" jwks --listen "127.0.0.1:$jwks_port" 2>/dev/null &
pids+=($!)

new_database() { # NAME: a migrated database without avatars (the bot's tables first, if asked)
  local db=$1
  databases+=("$db")
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
  if [[ $AVATARS_SCHEMA == bot-live ]]; then
    psql -q -v ON_ERROR_STOP=1 "${admin_url%/*}/$db" \
      -f services/webhook-api/tests/fixtures/bot/live_schema.sql >/dev/null
  fi
  DATABASE_URL="${admin_url%/*}/$db" REDIS_URL=$redis_url MINIO_BUCKET_NAME=bench-files \
    FAL_WEBHOOK_SECRET=$WEBHOOK_SECRET LOG_LEVEL=warn "$api_bin" migrate
}

seed_events() { # DB COUNT: COUNT stored FAL completions, a million per transaction, then ANALYZE
  local db_url="${admin_url%/*}/$1" from=1 to
  while ((from <= $2)); do
    to=$((from + 999999 < $2 ? from + 999999 : $2))
    psql -q -v ON_ERROR_STOP=1 "$db_url" -c "INSERT INTO webhook_events (source, delivery_key,
        fal_request_id, event, outcome, signature_scheme, http_request_id, instance_id, headers,
        payload, received_at, last_delivered_at)
      SELECT 'fal', 'fal:seeded-' || g || ':completed', 'seeded-' || g, 'completed', 'unmatched',
        'hmac', 'seeded', 'bench', '{\"user-agent\": \"fal-webhook\", \"content-type\": \"application/json\"}',
        jsonb_build_object('request_id', 'seeded-' || g, 'status', 'OK', 'error', null,
          'payload', jsonb_build_object('diffusers_lora_file', jsonb_build_object(
            'url', 'https://v3.fal.media/files/seeded/' || md5(g::text) || '_pytorch_lora_weights.safetensors',
            'content_type', 'application/octet-stream', 'file_name', 'pytorch_lora_weights.safetensors',
            'file_size', 89745224), 'config_file', jsonb_build_object(
            'url', 'https://v3.fal.media/files/seeded/' || md5(g::text) || '_config.json',
            'content_type', 'application/octet-stream', 'file_name', 'config.json', 'file_size', 452))),
        now() - (g % 15552000) * interval '1 second', now() - (g % 15552000) * interval '1 second'
      FROM generate_series($from, $to) g" >/dev/null
    from=$((to + 1))
  done
  psql -q "$db_url" -c "VACUUM ANALYZE webhook_events" >/dev/null
}

bench_user=00000000-0000-4000-8000-00000000b0b0
seed_avatars() { # DB PREFIX COUNT: avatars PREFIX1..PREFIXCOUNT in training, as the bot writes them
  local insert
  if [[ $AVATARS_SCHEMA == bot-live ]]; then
    insert="INSERT INTO users (id, telegram_id, first_name, language_code, is_bot, is_blocked,
        created_at, updated_at) VALUES ('$bench_user', 'bench', 'Bench', 'ru', false, false, now(), now())
        ON CONFLICT DO NOTHING;
      INSERT INTO avatars (id, user_id, name, gender, avatar_type, status, training_progress, fal_mode,
        fal_iterations, fal_priority, trigger_word, lora_rank, avatar_data, training_config,
        photos_count, generations_count, created_at, updated_at, training_type, fal_request_id)
      SELECT gen_random_uuid(), '$bench_user', 'bench', 'FEMALE', 'CHARACTER', 'TRAINING', 0,
        'character', 500, 'QUALITY', 'TOK', 32, '{}', '{}', 0, 0, now(), now(), 'PORTRAIT', '$2' || g
      FROM generate_series(1, $3) g"
  else
    insert="INSERT INTO avatars (user_id, name, status, fal_request_id)
      SELECT gen_random_uuid(), 'bench', 'TRAINING', '$2' || g FROM generate_series(1, $3) g"
  fi
  psql -q -v ON_ERROR_STOP=1 "${admin_url%/*}/$1" -c "$insert" -c "VACUUM ANALYZE avatars" >/dev/null
}

# One instance as production runs it (JSON logs at info, file worker on but idle: the CDN URLs of
# the generated completions are never fetched because the instance has no S3 host to reach them).
start_instance() { # NAME DB PORT: sets instance_pid
  local name=$1 db=$2 port=$3
  DATABASE_URL="${admin_url%/*}/$db" REDIS_URL=$redis_url REDIS_KEY_PREFIX="bench:$name:" \
    MINIO_BUCKET_NAME=bench-files HOST=127.0.0.1 PORT=$port INSTANCE_ID="bench-$name" \
    ENVIRONMENT=production LOG_FORMAT=json LOG_LEVEL=info FILE_WORKERS=0 \
    FAL_WEBHOOK_SECRET=$WEBHOOK_SECRET FAL_JWKS_URL="http://127.0.0.1:$jwks_port/" \
    "$api_bin" serve >>"$OUT/$name.log" 2>&1 &
  instance_pid=$!
  pids+=("$instance_pid")
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" || { log "$name did not start"; tail "$OUT/$name.log" >&2; exit 1; }
}

nginx_pids() { # PID_FILE: the master and its workers
  local master
  master=$(cat "$1")
  echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
}

rss_kib() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }

# CPU seconds used, per process group, while a command runs: where the time goes.
cpu_ticks() { # PID...: user+system clock ticks
  local total=0 pid
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
# Processes found by name at the end of a run: a PostgreSQL backend the pool opened during the
# run counts from zero, not from the first snapshot (where it did not exist yet).
ticks_by_name() { # COMM: "pid ticks" of every process with that name
  local pid
  for pid in $(pgrep -x "$1"); do
    [[ -r /proc/$pid/stat ]] && echo "$pid $(awk '{print $14 + $15}' "/proc/$pid/stat")"
  done
  true
}
delta_ticks() { # BEFORE AFTER: files of "pid ticks"; the ticks used in between
  awk 'NR == FNR {before[$1] = $2; next} {sum += $2 - (($1 in before) ? before[$1] : 0)} END {print sum + 0}' "$1" "$2"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

# Each run starts from the same state: dirty pages of the previous run (or of seeding) written
# out now, not by a checkpoint or the kernel's writeback in the middle of the next measurement.
settle() {
  runuser -u postgres -- psql -qc CHECKPOINT >/dev/null
  sync
}

# The disk's own stalls beside a fixed-rate run: 20 fdatasyncs a second (fsync_probe.py) on
# PostgreSQL's disk, over the run's measured seconds (after its 2 s warm-up); `wait` for it.
start_fsync_probe() { # LABEL: sets fsync_probe to the probe's pid
  (sleep 2 && python3 "$repo/scripts/bench/fsync_probe.py" "$1 disk" "$DURATION" 20 "$pg_disk_dir" >>"$results") &
  fsync_probe=$!
}

fixed_rate_run() { # LABEL URL [loadgen options...]: loadgen_run with the disk probed beside it
  settle
  start_fsync_probe "$1"
  loadgen_now "$@"
  wait "$fsync_probe"
}

loadgen_run() { # LABEL URL [loadgen options...]: one run, its report appended to results
  settle
  loadgen_now "$@"
}

loadgen_now() { # LABEL URL [loadgen options...]: the run, without settling first
  local label=$1 url=$2
  shift 2
  "$loadgen" run "$url" --label "$label" --json "$results" -c "$CONNECTIONS" \
    --duration "$DURATION" --warmup 2 --timeline "$@" | tee -a "$OUT/loadgen.txt" >&2
}

# Saturation run with the CPU split: instance(s), PostgreSQL, Redis, nginx, the rest (the load
# generator, mostly). Also samples the instances' RSS every 0.2 s.
measured_run() { # LABEL URL "INSTANCE_PIDS" "NGINX_PIDS" [loadgen options...]
  local label=$1 url=$2 instances=$3 nginx_pids=$4
  shift 4
  local -a instance_pids nginx_pid_list
  read -r -a instance_pids <<<"$instances"
  read -r -a nginx_pid_list <<<"$nginx_pids"
  local i0 n0 m0 peak=0
  settle
  ticks_by_name postgres >"$work/pg.before"
  ticks_by_name redis-server >"$work/redis.before"
  i0=$(cpu_ticks "${instance_pids[@]}"); n0=$(cpu_ticks "${nginx_pid_list[@]}"); m0=$(machine_ticks)
  (
    while sleep 0.2; do
      local sum=0 pid
      for pid in "${instance_pids[@]}"; do sum=$((sum + $(rss_kib "$pid"))); done
      echo "$sum"
    done
  ) >"$work/rss.$label" &
  local sampler=$!
  loadgen_now "$label" "$url" "$@"
  kill "$sampler"
  peak=$(sort -n "$work/rss.$label" | tail -1)
  local i1 n1 m1
  i1=$(cpu_ticks "${instance_pids[@]}"); n1=$(cpu_ticks "${nginx_pid_list[@]}"); m1=$(machine_ticks)
  ticks_by_name postgres >"$work/pg.after"
  ticks_by_name redis-server >"$work/redis.after"
  local postgres_ticks redis_ticks
  postgres_ticks=$(delta_ticks "$work/pg.before" "$work/pg.after")
  redis_ticks=$(delta_ticks "$work/redis.before" "$work/redis.after")
  record "$(printf '{"label":"%s cpu","ticks_per_second":%s,"instance":%s,"postgres":%s,"redis":%s,"nginx":%s,"machine":%s,"instances_peak_rss_kib":%s,"instances":%s}' \
    "$label" "$(getconf CLK_TCK)" $((i1 - i0)) "$postgres_ticks" "$redis_ticks" $((n1 - n0)) $((m1 - m0)) "$peak" "${#instance_pids[@]}")"
}

saturation_of() { # LABEL: throughput of a recorded run
  python3 - "$results" "$1" <<'PY'
import json, sys
path, label = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if json.loads(l).get("label") == label]
print(int(runs[-1]["throughput"]))
PY
}

# Every avatar a run completes is fresh: each run gets its own prefix with enough of them.
avatars_for_run=$(( (DURATION + 3) * 9000 ))
# pgbench works on a table as large as the one-instance runs' (6 prefixes), so that both pay
# the same for pages that no longer fit in shared buffers.
table_avatars=$((6 * avatars_for_run))

# pgbench with the CPU split as measured_run's: pgbench's own (its rusage), and PostgreSQL:
# the rest of the machine's (its backends exit with pgbench's connections, before they could
# be read).
pgbench_run() { # LABEL DB AVATARS [SCRIPT]: SCRIPT (default: the ingest transaction) on avatars pgb-1..pgb-AVATARS
  local script=${4:-scripts/bench/ingest.pgbench.sql} m0 m1 pgbench_seconds postgres_ticks
  settle
  m0=$(machine_ticks)
  pgbench_seconds=$(python3 -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT, check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime)' "$OUT/$2.txt" \
    pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" -D avatars="$3" \
    -f "$script" "${admin_url%/*}/$2")
  m1=$(machine_ticks)
  postgres_ticks=$(python3 -c "print(round($((m1 - m0)) - $pgbench_seconds * $(getconf CLK_TCK)))")
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$OUT/$2.txt")
  latency=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$OUT/$2.txt")
  record "{\"label\":\"$1\",\"throughput\":$tps,\"latency_avg_ms\":$latency,\"connections\":$CONNECTIONS,\"avatars\":$3,\"avatars_schema\":\"$AVATARS_SCHEMA\",\"seconds\":$DURATION,\"warmup\":0}"
  record "$(printf '{"label":"%s cpu","ticks_per_second":%s,"instance":0,"postgres":%s,"redis":0,"nginx":0,"machine":%s,"instances_peak_rss_kib":0,"instances":0}' \
    "$1" "$(getconf CLK_TCK)" "$postgres_ticks" $((m1 - m0)))"
  log "$1: $tps tps, average latency $latency ms"
}

# pgbench at a fixed rate (-R, Poisson arrivals, latency counted from each transaction's
# scheduled start as the load generator counts it): the tail a durable transaction has on this
# machine at half its saturation, the baseline for the instances' half-rate runs. The first 2 s
# are left out as the load generator's warm-up is.
pgbench_rate_run() { # LABEL DB AVATARS RATE
  local logs
  logs=$(mktemp -d)
  settle
  start_fsync_probe "$1"
  (cd "$logs" && pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$((DURATION + 2))" -R "$4" -l \
    -D avatars="$3" -f "$repo/scripts/bench/ingest.pgbench.sql" "${admin_url%/*}/$2" >"$OUT/$2-rate.txt" 2>&1)
  wait "$fsync_probe"
  python3 - "$1" "$4" "$DURATION" "$logs" >>"$results" <<'PY'
import glob, json, sys
label, rate, seconds, logs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [line.split() for path in glob.glob(f"{logs}/pgbench_log.*") for line in open(path)]
start = min(float(r[4]) + float(r[5]) / 1e6 for r in rows)
measured = [(float(r[4]) + float(r[5]) / 1e6 - start - 2, int(r[2]) / 1000) for r in rows]
measured = [(t, ms) for t, ms in measured if 0 <= t < seconds]
latencies = sorted(ms for _, ms in measured)
at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
timeline = [[0, 0.0] for _ in range(seconds)]  # per second: answers, slowest ms (as the loadgen's)
for t, ms in measured:
    timeline[int(t)][0] += 1
    timeline[int(t)][1] = max(timeline[int(t)][1], ms)
print(json.dumps({"label": label, "target_rate": rate, "throughput": len(latencies) / seconds,
                  "latency_ms": {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
                                 "p999": at(0.999), "max": latencies[-1]},
                  "timeline": timeline}))
PY
  rm -rf "$logs"
  log "$1: $(tail -n 1 "$results")"
}

# The disk PostgreSQL writes its WAL to (fsync_probe.py writes its file beside the data directory).
pg_disk_dir=$(dirname "$(runuser -u postgres -- psql -tAXc 'SHOW data_directory')")
if wants disk; then
  log "the disk alone: 8 KiB fdatasync, 200 a second, ${DURATION}s"
  python3 "$repo/scripts/bench/fsync_probe.py" "disk alone" "$DURATION" 200 "$pg_disk_dir" >>"$results"
fi

# The table that fits in memory: as many avatars as one run completes (each completion for an
# avatar of its own), on a fresh database for every run, pgbench and the instance alike.
if wants hot; then
  for rep in $(seq 1 "$HOT_REPEATS"); do
    log "hot table, run $rep of $HOT_REPEATS: $avatars_for_run avatars"
    new_database bench_hot_minimal
    seed_avatars bench_hot_minimal pgb- "$avatars_for_run"
    pgbench_run "hot pgbench minimal #$rep" bench_hot_minimal "$avatars_for_run" scripts/bench/minimal.pgbench.sql
    new_database bench_hot_pgbench
    seed_avatars bench_hot_pgbench pgb- "$avatars_for_run"
    pgbench_run "hot pgbench #$rep" bench_hot_pgbench "$avatars_for_run"
    new_database bench_hot
    seed_avatars bench_hot hot- "$avatars_for_run"
    start_instance "hot-$rep" bench_hot 18402
    measured_run "hot single saturation hmac #$rep" "http://127.0.0.1:18402/api/v1/avatar/status_update" \
      "$instance_pid" "" --prefix hot- --avatars "$avatars_for_run"
    kill "$instance_pid"
    wait "$instance_pid" 2>/dev/null || true
  done
fi

if wants pgbench; then
  log "pgbench: the ingest transaction, $CONNECTIONS connections, ${DURATION}s"
  new_database bench_pgbench
  seed_avatars bench_pgbench pgb- "$table_avatars"
  pgbench_run pgbench bench_pgbench "$table_avatars"
  pgbench_rate_run "pgbench half-rate" bench_pgbench "$table_avatars" "$(( $(saturation_of pgbench) / 2 ))"
fi

single_url="http://127.0.0.1:18401/api/v1/avatar/status_update"
if wants single || wants payload; then
  new_database bench_single
  for prefix in sat- rate- ed- h2- pad16k- pad256k-; do seed_avatars bench_single "$prefix" "$avatars_for_run"; done
  if ((EVENTS_ROWS > 0)); then
    log "seeding $EVENTS_ROWS rows into webhook_events"
    seed_events bench_single "$EVENTS_ROWS"
    record "{\"label\":\"single events rows\",\"rows\":$EVENTS_ROWS}"
  fi
  start_instance single bench_single 18401
  single=$instance_pid
  sleep 2
  record "{\"label\":\"single idle rss\",\"rss_kib\":$(rss_kib "$single")}"
fi
if wants single; then
  measured_run "single saturation hmac" "$single_url" "$single" "" --prefix sat- --avatars "$avatars_for_run"
  half=$(( $(saturation_of "single saturation hmac") / 2 ))
  fixed_rate_run "single half-rate hmac" "$single_url" --rate "$half" --prefix rate- --avatars "$avatars_for_run"
  measured_run "single saturation ed25519" "$single_url" "$single" "" --scheme ed25519 --prefix ed- --avatars "$avatars_for_run"
  loadgen_run "single saturation http2" "$single_url" --protocol http2 --prefix h2- --avatars "$avatars_for_run"
  measured_run "single saturation redeliveries" "$single_url" "$single" "" --mix redelivery=100 --prefix sat- --avatars "$avatars_for_run"
  measured_run "single saturation bad signatures" "$single_url" "$single" "" --mix bad=100 --prefix sat- --avatars "$avatars_for_run"
  measured_run "single saturation mixed" "$single_url" "$single" "" --mix new=80,redelivery=10,progress=5,bad=5 --prefix sat- --avatars "$avatars_for_run"
fi
if wants payload; then
  for padding in 16384:16k 262144:256k; do
    DURATION=$((DURATION * 2 / 3)) loadgen_run "single saturation payload +${padding#*:}B" "$single_url" \
      --padding "${padding%%:*}" --prefix "pad${padding#*:}-" --avatars "$avatars_for_run"
  done
fi

if wants rows; then
  for rows in 1000:1k 1000000:1m; do
    db="bench_rows_${rows#*:}"
    new_database "$db"
    seed_avatars "$db" row- "${rows%%:*}"
    port=$((18410 + ${#rows}))
    start_instance "rows-${rows#*:}" "$db" "$port"
    DURATION=$((DURATION * 2 / 3)) loadgen_run "rows ${rows%%:*} progress updates" \
      "http://127.0.0.1:$port/api/v1/avatar/status_update" --mix progress=100 --prefix row- --avatars "${rows%%:*}"
    kill "$instance_pid"
  done
fi

if wants cluster; then
  cluster_dir="$work/cluster"
  new_database bench_cluster
  seed_avatars bench_cluster cl- "$avatars_for_run"
  seed_avatars bench_cluster clrate- "$avatars_for_run"
  log "cluster: two instances behind nginx (TLS), rate limit lifted for the benchmark"
  CLUSTER_DIR=$cluster_dir CLUSTER_DB=bench_cluster API_PORT_1=18421 API_PORT_2=18422 \
    NGINX_HTTP_PORT=18480 NGINX_HTTPS_PORT=18443 NGINX_WEBHOOK_PORT=18444 NGINX_CONSOLE_PORT=18448 \
    WEBHOOK_RATE_LIMIT=1000000r/s WEBHOOK_RATE_BURST=1000000 ENVIRONMENT=production LOG_LEVEL=info \
    FAL_WEBHOOK_SECRET=$WEBHOOK_SECRET REDIS_KEY_PREFIX=bench:cluster: MINIO_BUCKET_NAME=bench-files \
    FILE_WORKERS=0 WEBHOOK_API_BIN=$api_bin scripts/dev/cluster.sh up 2>"$OUT/cluster.log"
  instances="$(cat "$cluster_dir/api-1.pid") $(cat "$cluster_dir/api-2.pid")"
  cluster_nginx=$(nginx_pids "$cluster_dir/nginx.pid")
  ca="$cluster_dir/tls/ca.pem"

  # The proxy's ceiling: the same nginx build, TLS certificate, HTTP version and workers,
  # answering a static 200 itself.
  mkdir -p "$work/static/logs"
  cat >"$work/static/nginx.conf" <<NGINX
worker_processes auto;
pid $work/static/nginx.pid;
events { worker_connections 4096; }
http {
  access_log $work/static/logs/access.log;
  error_log $work/static/logs/error.log;
  server {
    listen 127.0.0.1:18445 ssl http2;
    ssl_certificate $cluster_dir/tls/fullchain.pem;
    ssl_certificate_key $cluster_dir/tls/privkey.pem;
    location / { default_type application/json; return 200 '{"result":"applied"}'; }
  }
  # The cheapest refusal a proxied request can get: nginx proxying (as webhook-proxy.conf does)
  # to an upstream that is nginx answering 401 itself. The ceiling of any refusal through nginx.
  upstream static_refusal {
    server 127.0.0.1:18446;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:18446;
    access_log off;
    location / { default_type application/json; return 401 '{"error":"bad_signature"}'; }
  }
  server {
    listen 127.0.0.1:18447 ssl http2;
    ssl_certificate $cluster_dir/tls/fullchain.pem;
    ssl_certificate_key $cluster_dir/tls/privkey.pem;
    location / {
      proxy_pass http://static_refusal;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
  nginx -c "$work/static/nginx.conf" -p "$work/static" -e "$work/static/logs/error.log"
  sleep 0.5
  static_nginx=$(nginx_pids "$work/static/nginx.pid")
  measured_run "nginx static 200" "https://localhost:18445/api/v1/avatar/status_update" "" "$static_nginx" \
    --ca-cert "$ca" --prefix cl- --avatars "$avatars_for_run"
  measured_run "nginx proxying to a static 401" "https://localhost:18447/api/v1/avatar/status_update" "" \
    "$static_nginx" --ca-cert "$ca" --mix bad=100 --prefix cl- --avatars "$avatars_for_run"
  nginx -c "$work/static/nginx.conf" -p "$work/static" -s quit

  cluster_url="https://localhost:18444/api/v1/avatar/status_update"
  measured_run "cluster saturation hmac" "$cluster_url" "$instances" "$cluster_nginx" --ca-cert "$ca" \
    --prefix cl- --avatars "$avatars_for_run"
  measured_run "cluster saturation bad signatures" "$cluster_url" "$instances" "$cluster_nginx" --ca-cert "$ca" \
    --mix bad=100 --prefix cl- --avatars "$avatars_for_run"
  half=$(( $(saturation_of "cluster saturation hmac") / 2 ))
  fixed_rate_run "cluster half-rate hmac" "$cluster_url" --ca-cert "$ca" --rate "$half" \
    --prefix clrate- --avatars "$avatars_for_run"
  # The same rate in pgbench, on the same disk: the tail a durable transaction has there anyway.
  new_database bench_cluster_pgbench
  seed_avatars bench_cluster_pgbench pgb- "$avatars_for_run"
  pgbench_rate_run "pgbench at the cluster's half-rate" bench_cluster_pgbench "$avatars_for_run" "$half"
  # What a bot's user waits for: a completion's arrival to the avatar's row reading COMPLETED
  # and to its entry on the bot's stream, at a rate production sees.
  e2e_count=$((E2E_RATE * DURATION))
  seed_avatars bench_cluster e2e- "$e2e_count"
  settle
  "$loadgen" end-to-end "$cluster_url" --ca-cert "$ca" --prefix e2e- --count "$e2e_count" \
    --rate "$E2E_RATE" --database-url "${admin_url%/*}/bench_cluster" --redis-url "$redis_url" \
    --stream bench:cluster:avatar:events --label "cluster end-to-end" --json "$results" >&2
  CLUSTER_DIR=$cluster_dir scripts/dev/cluster.sh down 2>/dev/null
  cluster_dir=""
fi

if wants verify; then
  log "cargo bench: verification and parsing"
  cargo bench -q -p webhook-api --bench verify -- --noplot >"$OUT/cargo-bench.txt" 2>&1
  for name in hmac_sha256_verify hmac_sha256_reject fal_ed25519_verify fal_parse_completion; do
    ns=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["mean"]["point_estimate"], 1))' \
      "$target_dir/criterion/$name/new/estimates.json")
    record "{\"label\":\"cargo bench $name\",\"ns\":$ns}"
  done
fi

# Instructions are counted for the instance's whole life, so it runs twice under callgrind,
# each time warmed up first (database connections: SCRAM authentication alone is millions of
# instructions), the second time with 10 s more of callbacks: the difference divided by the
# difference in callbacks is the cost of one, whatever start-up, warm-up and shutdown cost.
callgrind_instance() { # NAME JSON [loadgen options...]: prints total instructions
  local name=$1 json=$2
  shift 2
  DATABASE_URL="${admin_url%/*}/bench_callgrind" REDIS_URL=$redis_url REDIS_KEY_PREFIX="bench:cg:" \
    MINIO_BUCKET_NAME=bench-files HOST=127.0.0.1 PORT=18431 INSTANCE_ID=bench-cg \
    ENVIRONMENT=production LOG_FORMAT=json LOG_LEVEL=info FILE_WORKERS=0 FAL_WEBHOOK_SECRET=$WEBHOOK_SECRET \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.out" \
    "$api_bin" serve >>"$OUT/callgrind-instance.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:18431/health/ready" 2>/dev/null && break
    sleep 0.2
  done
  "$loadgen" run "http://127.0.0.1:18431/api/v1/avatar/status_update" -c 8 --duration 3 --warmup 0 \
    --prefix "cg-$name-warm-" --avatars 20000 --json "$json" >/dev/null
  if (($#)); then
    "$loadgen" run "http://127.0.0.1:18431/api/v1/avatar/status_update" --warmup 0 "$@" --json "$json" >/dev/null
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  callgrind_annotate "$OUT/callgrind.$name.out" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}

if wants callgrind; then
  log "callgrind: instructions per callback in the instance"
  new_database bench_callgrind
  for prefix in cg- cg-base-warm- cg-loaded-warm-; do seed_avatars bench_callgrind "$prefix" 20000; done
  base=$(callgrind_instance base "$work/cg-base.jsonl")
  loaded=$(callgrind_instance loaded "$work/cg-loaded.jsonl" -c 8 --duration 10 --prefix cg- --avatars 20000)
  sent() { python3 -c 'import json,sys; print(sum(json.loads(l)["requests"] for l in open(sys.argv[1])))' "$1"; }
  cg_requests=$(($(sent "$work/cg-loaded.jsonl") - $(sent "$work/cg-base.jsonl")))
  callgrind_annotate --inclusive=no "$OUT/callgrind.loaded.out" 2>/dev/null | head -60 >"$OUT/callgrind-top.txt" || true
  record "{\"label\":\"callgrind instance\",\"instructions\":$((loaded - base)),\"requests\":$cg_requests}"
fi

if wants console; then
  log "console: pages over ${CONSOLE_ROWS:-1000000} stored deliveries"
  new_database bench_console
  DATABASE_URL="${admin_url%/*}/bench_console" REDIS_URL=$redis_url MINIO_BUCKET_NAME=bench-files \
    python3 scripts/bench/console.py --rows "${CONSOLE_ROWS:-1000000}" --json "$results" "$api_bin" \
    | tee "$OUT/console.txt" >&2
fi

if wants filecopy; then
  log "file copy: 200 MB CDN -> S3"
  scripts/bench/file-copy.sh 2>&1 | tee "$OUT/file-copy.txt" >&2
  python3 - "$OUT/file-copy.txt" >>"$results" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def grab(pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None
print(json.dumps({"label": "file copy", "worker_seconds": grab(r"file worker \(streamed\)\s+([0-9.]+)"),
    "baseline_seconds": grab(r"aws s3 cp\s+([0-9.]+)"), "idle_rss_mib": grab(r"idle ([0-9.]+) MiB"),
    "copy_rss_increase_mib": grab(r"\(\+([0-9.]+) MiB\)")}))
PY
fi

python3 scripts/bench/report.py "$results" | tee "$OUT/summary.md"
log "results: $OUT"
# A figure is only worth something if every answer was the one expected.
if grep -q '"unexpected":[1-9]' "$results"; then
  log "FAILED: some runs had unexpected answers or errors (see $OUT/loadgen.txt)"
  exit 1
fi
