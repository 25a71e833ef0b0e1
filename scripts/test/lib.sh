#!/usr/bin/env bash
# Shared by the container tests (containers.sh, swarm.sh): timed phases, a local CA, the
# reference registry, the dependencies container, and signed callbacks under load (sent and
# retried as FAL does by tools/loadgen's `deliver`) with their check (every one sent applied
# exactly once). Sourced, not run; the caller sets TEST_NAME,
# work (its scratch directory), SECRET, DEPS (the dependencies container's name) and LOAD_URL.
# shellcheck disable=SC2154,SC2034 # work, repo, LOAD_RATE … are the caller's; registry_pid, load_pid are read by it

log() { echo "$TEST_NAME: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

timings=()
phase_name=""
phase_start=$SECONDS
phase() {
  [[ -n "$phase_name" ]] && timings+=("$(printf '%-44s %4d s' "$phase_name" $((SECONDS - phase_start)))")
  phase_name=$1
  phase_start=$SECONDS
  log "== $1"
}
print_timings() { # STATUS
  timings+=("$(printf '%-44s %4d s' "$phase_name" $((SECONDS - phase_start)))")
  log "phase times:"
  printf '  %s\n' "${timings[@]}" >&2
  if (($1 == 0)); then log "all phases passed in $SECONDS s"; else log "exit status $1"; fi
}

# Phases "base images" (debootstrap, cached) and "release binary". The Dockerfiles are the
# production ones; only build arguments differ: no Rust image can be pulled here, so the API
# image takes a binary built on this (bookworm) host. Sets DEPS_IMAGE, BUILD_ARGS and
# API_BUILD_TARGET.
base_images_and_release_binary() {
  phase "base images"
  local base runtime_image
  base=$("$repo/scripts/containers/base-images.sh")
  runtime_image=$(sed -n 's/^RUNTIME_IMAGE=//p' <<<"$base")
  DEPS_IMAGE=$(sed -n 's/^DEPS_IMAGE=//p' <<<"$base")
  export BUILD_ARGS="RUNTIME_IMAGE=$runtime_image NGINX_BASE_IMAGE=$runtime_image"
  export API_BUILD_TARGET=prebuilt

  phase "release binary"
  # One at a time, as the benchmark suite builds them (scripts/bench/run.sh): together, cargo
  # unifies their dependencies' features and builds webhook-api a second time, differently.
  cargo build --release --locked -q -p webhook-api
  cargo build --release --locked -q -p webhook-loadgen
  mkdir -p "$repo/dist"
  cp "${CARGO_TARGET_DIR:-$repo/target}/release/webhook-api" "$repo/dist/webhook-api"
  strip "$repo/dist/webhook-api"
  LOADGEN="${CARGO_TARGET_DIR:-$repo/target}/release/webhook-loadgen"
}

# A local CA and a server certificate as an operator's certs/ folder: DIR/{ca.pem,ca.key,
# fullchain.pem,privkey.pem,ext} (scripts/dev/certs.sh).
make_certs() { # DIR SUBJECT_ALT_NAMES (e.g. DNS:localhost,IP:127.0.0.1)
  "$repo/scripts/dev/certs.sh" "$1" "$2"
}

# The reference registry (Debian's docker-registry) on ADDRESS, its data in $work/registry;
# sets registry_pid.
registry_pid=""
start_registry() { # ADDRESS
  mkdir -p "$work/registry"
  cat >"$work/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $1
log:
  level: warn
YAML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://$1/v2/" && return 0; sleep 0.2; done
  die "registry did not start: $(cat "$work/registry.log")"
}

# PostgreSQL (with the bot's live schema: native enums, json), Redis, S3 and a CDN in one
# container of the locally made deps image; the remaining arguments go to docker run.
start_deps() { # DEPS_IMAGE [docker run arguments...]
  local image=$1
  shift
  mkdir -p "$work/cdn"
  head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$work/cdn/lora.safetensors"
  docker run -d --name "$DEPS" "$@" \
    -v "$(command -v s3s-fs):/usr/local/bin/s3s-fs:ro" -v "$work/cdn:/srv/cdn:ro" \
    -v "$repo/scripts/containers/deps-entrypoint.sh:/usr/local/bin/deps-entrypoint:ro" \
    "$image" bash /usr/local/bin/deps-entrypoint >/dev/null
  for _ in $(seq 1 60); do docker exec "$DEPS" test -e /tmp/deps-ready 2>/dev/null && break; sleep 0.5; done
  docker exec "$DEPS" test -e /tmp/deps-ready || die "dependencies container not ready: $(docker logs "$DEPS" 2>&1 | tail -5)"
  # Production's database is the bot's: its tables exist before the service first starts, owned
  # by the role both use.
  docker exec -i "$DEPS" psql -q -v ON_ERROR_STOP=1 "postgresql://webhook:webhook@127.0.0.1/webhook" \
    <"$repo/services/webhook-api/tests/fixtures/bot/live_schema.sql" >/dev/null
}

psql_deps() { docker exec "$DEPS" runuser -u postgres -- psql -qtA -d webhook -c "$1"; }

# Avatars in training as the bot writes them into its tables: NAME COUNT → NAME-1..NAME-COUNT.
insert_training_avatars() {
  psql_deps "INSERT INTO users (id, telegram_id, first_name, language_code, is_bot, is_blocked,
      created_at, updated_at) VALUES ('00000000-0000-4000-8000-0000000c0c0c', 'containers', 'C',
      'ru', false, false, now(), now()) ON CONFLICT DO NOTHING;
    INSERT INTO avatars (id, user_id, name, gender, avatar_type, status, training_progress, fal_mode,
      fal_iterations, fal_priority, trigger_word, lora_rank, avatar_data, training_config,
      photos_count, generations_count, created_at, updated_at, training_type, fal_request_id)
    SELECT gen_random_uuid(), '00000000-0000-4000-8000-0000000c0c0c', '$1', 'FEMALE', 'CHARACTER',
      'TRAINING', 0, 'character', 500, 'QUALITY', 'TOK', 32, '{}', '{}', 0, 0, now(), now(),
      'PORTRAIT', '$1-' || g FROM generate_series(1, $2) g RETURNING id"
}

# Starts signed callbacks to LOAD_URL for COUNT fresh avatars in the background (LOADGEN, set
# by base_images_and_release_binary); `load_finish`
# stops sending new ones, waits for the answers and checks them.
load_pid=""
load_start() { # NAME COUNT
  insert_training_avatars "$1" "$2" >/dev/null
  rm -f "$work/$1.stop"
  WEBHOOK_SECRET=$SECRET "$LOADGEN" deliver "$LOAD_URL" --ca-cert "$work/certs/ca.pem" \
    --prefix "$1-" --count "$2" --rate "$LOAD_RATE" --stop-file "$work/$1.stop" >"$work/$1.json" &
  load_pid=$!
  sleep 2
}
summary_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
load_finish() { # NAME → checks: none failed, every sent one applied exactly once
  touch "$work/$1.stop"
  wait "$load_pid"
  load_pid=""
  local summary sent failed applied completed
  summary=$(cat "$work/$1.json")
  sent=$(summary_field sent <<<"$summary")
  failed=$(summary_field failed <<<"$summary")
  applied=$(psql_deps "SELECT count(*) FROM webhook_events WHERE outcome = 'applied' AND fal_request_id LIKE '$1-%'")
  completed=$(psql_deps "SELECT count(*) FROM avatars WHERE status = 'COMPLETED' AND fal_request_id LIKE '$1-%'")
  log "$1: sent $sent, acknowledged $(summary_field ok <<<"$summary"), failed $failed, 5xx answers $(summary_field answers_5xx <<<"$summary"), broken connections $(summary_field connection_errors <<<"$summary"), applied $applied ($summary)"
  ((failed == 0)) || die "$1: $failed callbacks failed"
  ((applied == sent)) || die "$1: $sent sent but $applied applied"
  ((completed == sent)) || die "$1: $sent sent but $completed avatars completed"
}
# What a sender that never retries (GitHub, Plane) would have lost: no answer >= 500 and no
# broken connection in the load NAME.
no_5xx() { # NAME
  local summary
  summary=$(cat "$work/$1.json")
  [[ $(summary_field answers_5xx <<<"$summary") == 0 && $(summary_field connection_errors <<<"$summary") == 0 ]] ||
    die "$1: a sender that does not retry lost deliveries: $summary"
}
