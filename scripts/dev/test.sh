#!/usr/bin/env bash
# Runs every check and test of the workspace against real PostgreSQL and Redis.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/dev/test.sh [--help] [-- CARGO_TEST_ARGS...]

Installs and starts the local PostgreSQL, Redis and S3 server (scripts/dev/deps.sh), then runs
  cargo fmt --check, cargo clippy -D warnings, shellcheck on the scripts, cargo test (and the
  suites that write avatars again on the bot's live schema), promtool on
  the alert rules (scripts/dev/check-monitoring.sh), a short
  run of the benchmark suite, the API contract (openapi.json validated, schemathesis against a
  live instance: scripts/test/schemathesis.sh), then the containerised cluster on the Docker engine (scripts/test/containers.sh)
  and the Swarm stack on a three-node swarm of extra engines (scripts/test/swarm.sh).
Settings (environment, defaults shown):
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-<cargo default>}   where builds are cached
  SKIP_LINT=${SKIP_LINT:-0}                  1 skips fmt, clippy and shellcheck
  SKIP_CONTAINERS=${SKIP_CONTAINERS:-0}            1 skips the Docker phases (compose and Swarm)
  SKIP_BENCH_SMOKE=${SKIP_BENCH_SMOKE:-0}           1 skips the short run of the benchmark suite
  BOT_VENV=${BOT_VENV:-\$HOME/.cache/webhook-bot-venv}   Python with SQLAlchemy 2 + psycopg2 (the tests
                                       that load rows through the bot's ORM mapping),
                                       standardwebhooks + cryptography (signing as senders do),
                                       aiogram 3 (the bot's Telegram library) and Playwright
                                       (the console's browser test, driving Debian's chromium)
  plus those of scripts/dev/deps.sh (see its --help).
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --) shift ;;
esac

cd "$(dirname "$0")/../.."
# Each phase's start, so the end (pass or fail) prints how long each one took.
phases=()
starts=()
step() {
  echo "==> $*" >&2
  phases+=("$*")
  starts+=("$SECONDS")
}
phase_times() {
  local i end
  echo "==> phase times" >&2
  for i in "${!phases[@]}"; do
    end=${starts[$((i + 1))]:-$SECONDS}
    printf '%6ds  %s\n' "$((end - starts[i]))" "${phases[i]}" >&2
  done
  printf '%6ds  in all\n' "$SECONDS" >&2
}
trap phase_times EXIT

step "dependencies"
deps_env=$(scripts/dev/deps.sh)
TEST_DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$deps_env")
TEST_REDIS_URL=$(sed -n 's/^REDIS_URL=//p' <<<"$deps_env")
TEST_MINIO_ENDPOINT=$(sed -n 's/^MINIO_ENDPOINT=//p' <<<"$deps_env")
TEST_MINIO_ACCESS_KEY=$(sed -n 's/^MINIO_ACCESS_KEY=//p' <<<"$deps_env")
TEST_MINIO_SECRET_KEY=$(sed -n 's/^MINIO_SECRET_KEY=//p' <<<"$deps_env")
export TEST_DATABASE_URL TEST_REDIS_URL TEST_MINIO_ENDPOINT TEST_MINIO_ACCESS_KEY TEST_MINIO_SECRET_KEY

# The bot reads the avatars through SQLAlchemy: the tests load what the service wrote the same way.
BOT_VENV=${BOT_VENV:-$HOME/.cache/webhook-bot-venv}
# The senders' own libraries sign what tests/senders/ sends (Standard Webhooks v1 and v1a); the
# bot's Telegram library (aiogram 3) checks the messages the service sends its users.
if ! "$BOT_VENV/bin/python" -c 'import sqlalchemy, psycopg2, standardwebhooks, cryptography, aiogram, playwright' >/dev/null 2>&1; then
  step "installing SQLAlchemy 2, psycopg2, standardwebhooks, cryptography, aiogram 3 and Playwright into $BOT_VENV"
  if ! python3 -m venv "$BOT_VENV" >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq python3-venv >/dev/null; else sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv "$BOT_VENV"
  fi
  "$BOT_VENV/bin/pip" install -q "sqlalchemy>=2,<3" psycopg2-binary "standardwebhooks>=1.1,<2" "cryptography>=42" "aiogram>=3.4,<4" "playwright>=1.40,<2"
fi
export TEST_BOT_PYTHON=$BOT_VENV/bin/python
# The console's browser test drives Debian's Chromium (Playwright's own browser download is
# never used: `playwright install` cannot reach its servers from here).
if [[ ! -x /usr/bin/chromium ]]; then
  step "installing chromium (Debian)"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

if [[ "${SKIP_LINT:-0}" != 1 ]]; then
  if ! command -v shellcheck >/dev/null 2>&1; then
    step "installing shellcheck"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq shellcheck >/dev/null; else sudo apt-get install -y -qq shellcheck >/dev/null; fi
  fi
fi

# The containers' base images (debootstrap: downloads and unpacking, mostly waiting on the
# network and the disk) are made beside the builds; the containers phase waits for them.
# Started after the last apt-get of the lint phase, so no two hold dpkg's lock.
base_images_pid=""
if [[ "${SKIP_CONTAINERS:-0}" != 1 ]] && docker info >/dev/null 2>&1; then
  base_images_log="${CARGO_TARGET_DIR:-target}/base-images.log"
  mkdir -p "$(dirname "$base_images_log")"
  scripts/containers/base-images.sh >"$base_images_log" 2>&1 &
  base_images_pid=$!
fi

if [[ "${SKIP_LINT:-0}" != 1 ]]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  step "shellcheck"
  git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck -x
fi

step "cargo test"
cargo test --workspace --locked "$@"

# The bot's production database has native enums and json columns: the suites that write
# avatars run again on a copy of its live schema (tests/fixtures/bot/live_schema.sql).
if [[ $# -eq 0 ]]; then
  step "cargo test on the bot's live schema (TEST_AVATARS_SCHEMA=bot-live)"
  TEST_AVATARS_SCHEMA=bot-live cargo test -p webhook-api --test it --locked -- \
    status_update:: batch:: resilience:: reconcile:: status_command:: files:: avatar_status:: \
    retention:: backup:: forget:: failover:: console::
fi

step "alert rules (promtool check + test rules)"
scripts/dev/check-monitoring.sh

# The release builds, once, one at a time as the benchmark suite and the containers build them
# (together, cargo would unify their features and build webhook-api twice): the phases below
# reuse them.
step "release binaries (webhook-api, webhook-loadgen)"
cargo build --release --locked -q -p webhook-api
cargo build --release --locked -q -p webhook-loadgen

# The benchmark suite must keep working: its single-instance section, briefly. It fails when
# any answer is not the one expected. (Figures from so short a run mean nothing.)
if [[ "${SKIP_BENCH_SMOKE:-0}" != 1 ]]; then
  step "benchmark smoke run (scripts/bench/run.sh --only single, 2 s per run)"
  smoke_out="${CARGO_TARGET_DIR:-target}/bench/smoke"
  rm -rf "$smoke_out"
  DURATION=2 OUT=$smoke_out scripts/bench/run.sh --only single >/dev/null
fi

# openapi.json, validated as served, and schemathesis against a live instance: generated and
# signed requests, every answer as the document says, no 5xx.
step "API contract: openapi-spec-validator and schemathesis (scripts/test/schemathesis.sh)"
scripts/test/schemathesis.sh

if [[ "${SKIP_CONTAINERS:-0}" == 1 ]]; then
  step "containers: skipped (SKIP_CONTAINERS=1)"
elif ! docker info >/dev/null 2>&1; then
  step "containers: SKIPPED, no Docker engine here (docker info fails): the container proof did not run"
else
  step "containers (scripts/test/containers.sh)"
  if [[ -n "$base_images_pid" ]] && ! wait "$base_images_pid"; then
    echo "the base images could not be made:" >&2
    cat "$base_images_log" >&2
    exit 1
  fi
  scripts/test/containers.sh
  step "swarm: the stack on three Docker engines (scripts/test/swarm.sh)"
  scripts/test/swarm.sh
fi
