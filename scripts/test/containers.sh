#!/usr/bin/env bash
# The containerised cluster for real, on this machine's Docker engine, with the files operators
# use: locally made base images, the reference registry, the deploy scripts, compose.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/test/containers.sh [--help]

Phases (each timed): base images (debootstrap, cached) · release binary · registry · database
(the bot's live schema: native enums, json), cache, S3 and CDN container · deploy (build, tag, push, start) · deploy again from the registry
with the local images removed · health · signed callbacks and a file copy · GitHub deliveries
spooled through a PostgreSQL outage and a restart · rolling update
under load · broken image rolled back under load · docker stop/start under load · backup,
removal, restore · cleanup (containers, network, registry data, images it built).
Settings (environment, defaults shown):
  REGISTRY_PORT=${REGISTRY_PORT:-5000}   the registry listens on 127.0.0.1:REGISTRY_PORT
  LOAD_RATE=${LOAD_RATE:-20}          signed callbacks per second during the load phases
Uses host ports 80, 443, 8443, 8001, 8002 (as in production). Needs root and Docker.
USAGE
}
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
work=$(mktemp -d /tmp/webhook-containers.XXXXXX)
REGISTRY_PORT=${REGISTRY_PORT:-5000}
LOAD_RATE=${LOAD_RATE:-20}
export REGISTRY="127.0.0.1:$REGISTRY_PORT"
export ENV_FILE="$work/prod.env"
export COMPOSE_PROJECT=aisha-webhook
SECRET=containers-test-secret
# The operators' token of this test (every scope): health details, /metrics.
OPERATOR_TOKEN=$(openssl rand -hex 32)
DEPS=aisha-webhook-test-deps
compose=(docker-compose -p "$COMPOSE_PROJECT" --env-file "$ENV_FILE" -f "$repo/docker-compose.webhook.prod.yml")
TEST_NAME=containers
LOAD_URL=https://localhost:8443/api/v1/avatar/status_update
# shellcheck source=scripts/test/lib.sh
source "$repo/scripts/test/lib.sh"

cleanup() {
  local status=$?
  phase "cleanup"
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null
  if ((status != 0)); then
    for c in aisha-webhook-api-1 aisha-webhook-api-2 aisha-nginx-webhook; do
      log "--- last log lines of $c"
      docker logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2 || true
    done
  fi
  TAG=t1 "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  docker rm -f "$DEPS" >/dev/null 2>&1 || true
  docker network rm aisha_webhook_cluster >/dev/null 2>&1 || true
  [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$REGISTRY/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  [[ ${guide_env_link:-0} == 1 ]] && rm -f "$repo/prod.env"
  rm -rf "$work" "$repo/dist/webhook-api"
  print_timings "$status"
}
trap cleanup EXIT

health() { curl -fsS --cacert "$work/certs/ca.pem" -H "Authorization: Bearer $OPERATOR_TOKEN" "$@"; }
operator_get() { curl -fsS -H "Authorization: Bearer $OPERATOR_TOKEN" "$@"; }

phase "prerequisites"
docker info >/dev/null 2>&1 || die "no Docker engine (docker info fails)"
command -v docker-compose >/dev/null || die "docker-compose missing"
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v s3s-fs >/dev/null || cargo install --quiet --locked s3s-fs@0.14.1 --features binary
for port in 80 443 8443 8001 8002 "$REGISTRY_PORT"; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is in use"
done

base_images_and_release_binary

phase "registry"
start_registry "$REGISTRY"

phase "database, cache, S3, CDN container"
docker network create aisha_webhook_cluster >/dev/null
mkdir -p "$work/acme"
start_deps "$DEPS_IMAGE" --network aisha_webhook_cluster --network-alias deps
# TLS for nginx: a local CA and a certificate for localhost, as an operator's certs/ folder.
make_certs "$work/certs" DNS:localhost,IP:127.0.0.1

# A container cannot have more open files than the Docker daemon (20 000 on these machines).
daemon_nofile=$(awk '/open files/ {print $5}' "/proc/$(pidof dockerd | cut -d' ' -f1)/limits" 2>/dev/null || true)
[[ "$daemon_nofile" =~ ^[0-9]+$ ]] || daemon_nofile=$(ulimit -Hn)
[[ "$daemon_nofile" =~ ^[0-9]+$ ]] || daemon_nofile=65536
daemon_nofile=$((daemon_nofile > 65536 ? 65536 : daemon_nofile))
cat >"$ENV_FILE" <<ENV
COMPOSE_PROJECT_NAME=aisha-webhook
REGISTRY=$REGISTRY
TAG=latest
API_BIND_ADDRESS=127.0.0.1
TLS_CERT_DIR=$work/certs
ACME_DIR=$work/acme
WEBHOOK_RATE_LIMIT=1000r/s
NGINX_NOFILE=$daemon_nofile
WEBHOOK_RATE_BURST=1000
DATABASE_URL=postgresql+asyncpg://webhook:webhook@deps:5432/webhook
REDIS_URL=redis://deps:6379/0
MINIO_ENDPOINT=deps:9000
MINIO_ACCESS_KEY=containers-access
MINIO_SECRET_KEY=containers-secret
MINIO_BUCKET_NAME=avatars
MINIO_SECURE=false
FAL_WEBHOOK_SECRET=$SECRET
OPERATOR_TOKENS=containers:read+replay+deploy:$OPERATOR_TOKEN
FAL_API_KEY=unused-in-this-test
LOG_LEVEL=info
# The test's CDN is plain HTTP inside the network; allowed only outside production.
ENVIRONMENT=staging
FILE_ALLOW_HTTP=true
FILE_ALLOW_PRIVATE_ADDRESSES=true
FILE_ALLOWED_PORTS=8080
FILE_HOST_ALLOWLIST=deps
FILE_JOB_POLL_MS=500
WEBHOOK_SOURCES=github:github
WEBHOOK_SOURCE_GITHUB_SECRETS=$SECRET
ENV

phase "deploy t1 (build, tag, push, start)"
TAG=t1 HEALTH_TIMEOUT=90 scripts/deploy/webhook-complete.sh

phase "deploy t1 again, pulled from the registry"
# (down cannot remove the network while the dependencies container uses it: expected)
TAG=t1 "${compose[@]}" down --timeout 10 >/dev/null 2>&1 || true
docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$REGISTRY/" | xargs -r docker rmi -f >/dev/null
TAG=t1 HEALTH_TIMEOUT=90 scripts/deploy/webhook-complete.sh --no-build
catalog=$(scripts/deploy/registry.sh all)
log "registry: $(tr '\n' ';' <<<"$catalog")"
grep -q "^webhook-api: .*t1" <<<"$catalog" || die "webhook-api:t1 not in the registry"
grep -q "^nginx-webhook: .*t1" <<<"$catalog" || die "nginx-webhook:t1 not in the registry"

phase "health"
# The public health is the status alone, whatever token is sent with it.
health https://localhost:8443/health | grep -qx '{"status":"ok"}' ||
  die "health through nginx is not the status alone with a token"
curl -fsS --cacert "$work/certs/ca.pem" https://localhost:8443/health | grep -qx '{"status":"ok"}' ||
  die "the public health says more than its status"
for port in 8001 8002; do
  operator_get "http://127.0.0.1:$port/health" | grep -q '"build":"t1+' || die "instance on $port not t1"
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics") == 401 ]] ||
    die "/metrics on $port answers without a token"
done
for c in aisha-webhook-api-1 aisha-webhook-api-2 aisha-nginx-webhook; do
  [[ $(docker inspect -f '{{.State.Health.Status}}' "$c") == healthy ]] || die "$c not healthy"
done

phase "the console: on its own port, never on the public ones"
console_status() { curl -s -o /dev/null -w '%{http_code}' --cacert "$work/certs/ca.pem" "$1"; }
[[ $(console_status https://localhost:9444/console/login) == 200 ]] ||
  die "the console's sign-in page is not served on port 9444"
for port in 443 8443; do
  [[ $(console_status "https://localhost:$port/console/login") == 404 ]] ||
    die "the console answers on the public port $port"
done

phase "signed callbacks and a file copy"
avatar=$(insert_training_avatars containers-file 1 | head -1)
size=$(stat -c %s "$work/cdn/lora.safetensors")
body=$(printf '{"request_id":"{request_id}","status":"OK","error":null,"payload":{"diffusers_lora_file":{"url":"http://deps:8080/lora.safetensors","file_name":"pytorch_lora_weights.safetensors","file_size":%s}}}' "$size")
answer=$(WEBHOOK_SECRET=$SECRET "$LOADGEN" deliver "$LOAD_URL" --ca-cert "$work/certs/ca.pem" \
  --prefix containers-file- --body "$body")
grep -q '"results":{"applied":1}' <<<"$answer" || die "callback not applied: $answer"
for _ in $(seq 1 60); do
  [[ $(psql_deps "SELECT state FROM file_jobs WHERE avatar_id = '$avatar'") == "done" ]] && break
  sleep 0.5
done
stored_sha=$(psql_deps "SELECT sha256 FROM avatar_files WHERE avatar_id = '$avatar'")
[[ "$stored_sha" == "$(sha256sum "$work/cdn/lora.safetensors" | cut -d' ' -f1)" ]] ||
  die "file not copied: job $(psql_deps "SELECT state, last_error FROM file_jobs WHERE avatar_id = '$avatar'")"
key=$(psql_deps "SELECT lora_object_key FROM avatars WHERE id = '$avatar'")
docker exec "$DEPS" test -s "/srv/s3/avatars/$key" || die "object $key not in the S3 server"
[[ $(psql_deps "SELECT status::text FROM avatars WHERE id = '$avatar'") == COMPLETED ]] ||
  die "the bot's avatar is not COMPLETED: $(psql_deps "SELECT status FROM avatars WHERE id = '$avatar'")"
log "file copied: $key ($size bytes, sha256 $stored_sha)"

phase "the console through nginx's console port, in Chromium"
# As an operator through `ssh -L 9444:127.0.0.1:9444`: sign in, replay, bulk replay, a live
# tail that ends with its session, sign out; the "Replay with curl" line works where it says.
delivery=$(psql_deps "SELECT max(id) FROM webhook_events")
walk=$(printf '{"token":"%s","token_name":"containers","delivery_id":%s}\n' "$OPERATOR_TOKEN" "$delivery" |
  "${TEST_BOT_PYTHON:-python3}" services/webhook-api/tests/browser/console_front_door.py \
    https://localhost:9444 "$work/console-screenshots") || die "the browser's walk through nginx failed: $walk"
summary=$(tail -1 <<<"$walk")
python3 -c 'import json,sys; s=json.load(sys.stdin); assert not s["errors"] and set(s["origins"]) == {"https://localhost:9444"}, s' <<<"$summary" ||
  die "the browser's walk: $summary"
curl_url=$(grep -o 'https://[^ ]*/replay' <<<"$summary")
[[ "$curl_url" == "https://localhost:9444/api/v1/webhooks/events/$delivery/replay" ]] || die "the curl line names $curl_url"
health -X POST "$curl_url" >/dev/null || die "the console's curl line does not work through nginx"
log "the console through nginx: signed in, replayed, bulk-replayed, live tail ended with its session, signed out"

phase "two instances restarted 3 s apart under load: nginx answers no 5xx"
load_start apart 5000
started=$SECONDS
docker restart aisha-webhook-api-1 >/dev/null
sleep $((3 - (SECONDS - started) > 0 ? 3 - (SECONDS - started) : 0))
docker restart aisha-webhook-api-2 >/dev/null
for c in aisha-webhook-api-1 aisha-webhook-api-2; do
  TAG=t1 HEALTH_TIMEOUT=60 bash -c "source scripts/deploy/common.sh && wait_healthy $c"
done
load_finish apart
no_5xx apart

phase "GitHub deliveries through a PostgreSQL outage and a restart"
# GitHub never resends a failed delivery: while PostgreSQL is down each is kept in the
# instance's spool volume (202), across a restart of both containers, and stored when it is back.
github_delivery() { # DELIVERY_ID → the answer's status and body
  local body signature
  body=$(printf '{"ref":"refs/heads/main","after":"%040d","repository":{"full_name":"team/bot"},"n":"%s"}' 0 "$1")
  signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
  curl -sS --cacert "$work/certs/ca.pem" -w ' %{http_code}' -X POST https://localhost:8443/api/v1/webhooks/github \
    -H 'Content-Type: application/json' -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: $1" \
    -H "X-Hub-Signature-256: sha256=$signature" --data-binary "$body"
}
docker exec "$DEPS" pg_ctlcluster 15 main stop
for n in 1 2 3 4; do
  answer=$(github_delivery "outage-$n")
  [[ $answer == *'"spooled"'*' 202' ]] || die "a GitHub delivery during the outage: $answer"
done
# (health answers 503 while PostgreSQL is down, and still shows each instance's spool)
waiting=0
for port in 8001 8002; do
  spool=$(curl -sS -H "Authorization: Bearer $OPERATOR_TOKEN" "http://127.0.0.1:$port/health" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["spool"]["waiting"])') ||
    die "the health of the instance on $port shows no spool"
  waiting=$((waiting + spool))
done
((waiting == 4)) || die "the instances' spools hold $waiting deliveries, not 4"
docker restart aisha-webhook-api-1 aisha-webhook-api-2 >/dev/null
docker exec "$DEPS" pg_ctlcluster 15 main start
for c in aisha-webhook-api-1 aisha-webhook-api-2; do
  TAG=t1 HEALTH_TIMEOUT=90 bash -c "source scripts/deploy/common.sh && wait_healthy $c"
done
for _ in $(seq 1 60); do
  [[ $(psql_deps "SELECT count(*) FROM webhook_events WHERE source = 'github'") == 4 ]] && break
  sleep 0.5
done
stored=$(psql_deps "SELECT count(*) FROM webhook_events WHERE source = 'github' AND delivery_id LIKE 'outage-%'")
((stored == 4)) || die "$stored of 4 spooled GitHub deliveries stored"
announced=$(docker exec "$DEPS" redis-cli XLEN aisha:webhooks:github)
((announced == 4)) || die "$announced of 4 spooled GitHub deliveries announced"
log "4 GitHub deliveries spooled during the outage, kept across a restart, stored and announced once"

phase "rolling update to t2 under load"
load_start rolling 5000
TAG=t2 HEALTH_TIMEOUT=90 scripts/deploy/update-webhook-images.sh
load_finish rolling
no_5xx rolling
for port in 8001 8002; do
  operator_get "http://127.0.0.1:$port/health" | grep -q '"build":"t2+' || die "instance on $port does not report t2"
done

phase "a broken build, updated without TAG, rolled back under load"
# As the guide runs it: no TAG (prod.env says latest). The build passes check-config, then
# never becomes healthy.
cp dist/webhook-api "$work/webhook-api.good"
# shellcheck disable=SC2016 # $1 is the stand-in's own argument
printf '#!/bin/sh\n[ "$1" = check-config ] && { echo "configuration ok"; exit 0; }\necho "broken build" >&2\nexit 1\n' >dist/webhook-api
good_image=$(docker inspect -f '{{.Id}}' "$REGISTRY/webhook-api:t2")
load_start broken 5000
if env -u TAG HEALTH_TIMEOUT=30 scripts/deploy/update-webhook-images.sh 2>"$work/broken.log"; then
  die "the update to a broken image succeeded"
fi
load_finish broken
cp "$work/webhook-api.good" dist/webhook-api
grep -q "new images are tagged $(sed -n 's/^version = "\(.*\)"/\1/p' services/webhook-api/Cargo.toml)-" "$work/broken.log" ||
  die "the build without TAG did not get a tag of its own: $(tail -5 "$work/broken.log")"
grep -q "aisha-webhook-api-1: rollback-aisha-webhook-api-1 (image ${good_image:7:12})" "$work/broken.log" ||
  die "the failed update does not say what api-1 runs: $(tail -8 "$work/broken.log")"
for c in aisha-webhook-api-1 aisha-webhook-api-2; do
  [[ $(docker inspect -f '{{.Image}}' "$c") == "$good_image" ]] || die "$c does not run t2's image"
done
[[ $(docker inspect -f '{{.State.Health.Status}}' aisha-webhook-api-1) == healthy ]] || die "api-1 unhealthy after rollback"
# latest still names the good image in the registry.
docker rmi "$REGISTRY/webhook-api:latest" >/dev/null
docker pull -q "$REGISTRY/webhook-api:latest" >/dev/null
[[ $(docker inspect -f '{{.Id}}' "$REGISTRY/webhook-api:latest") == "$good_image" ]] ||
  die "latest in the registry no longer names the image that runs"

phase "a bad prod.env changes nothing"
ids_before=$(docker inspect -f '{{.Id}}' aisha-webhook-api-1 aisha-webhook-api-2 aisha-nginx-webhook)
sed 's/^LOG_LEVEL=.*/LOG_LEVEL=verbose/' "$ENV_FILE" >"$work/bad.env"
if ENV_FILE="$work/bad.env" TAG=t2 scripts/deploy/update-webhook-images.sh --no-build 2>"$work/bad.log"; then
  die "an update with a bad prod.env succeeded"
fi
grep -q 'LOG_LEVEL: unknown level "verbose"' "$work/bad.log" || die "the bad variable is not named: $(tail -3 "$work/bad.log")"
[[ $(docker inspect -f '{{.Id}}' aisha-webhook-api-1 aisha-webhook-api-2 aisha-nginx-webhook) == "$ids_before" ]] ||
  die "a bad prod.env recreated containers"

phase "a changed prod.env rolled out under load"
echo "REJECTED_ROWS_PER_SECOND=20" >>"$ENV_FILE"
load_start config 5000
TAG=t2 HEALTH_TIMEOUT=90 scripts/deploy/update-webhook-images.sh --no-build
load_finish config
for c in aisha-webhook-api-1 aisha-webhook-api-2; do
  docker inspect -f '{{.Config.Env}}' "$c" | grep -q REJECTED_ROWS_PER_SECOND=20 || die "$c did not get the new prod.env"
done

phase "the guide's compose commands, literally"
# From the repository root with prod.env, as the operators' guide writes them.
[[ -e prod.env ]] || { ln -s "$ENV_FILE" prod.env; guide_env_link=1; }
guide=(env -u ENV_FILE -u COMPOSE_PROJECT docker-compose -f docker-compose.webhook.prod.yml --env-file prod.env)
[[ $("${guide[@]}" ps | grep -c 'Up (healthy)') == 3 ]] || die "the guide's ps: $("${guide[@]}" ps)"
timeout 5 "${guide[@]}" logs -f --tail 3 aisha-webhook-api-1 >"$work/guide-logs.txt" 2>&1 || true
grep -q 'webhook_api' "$work/guide-logs.txt" || die "the guide's logs -f: $(head -3 "$work/guide-logs.txt")"
load_start restart 5000
"${guide[@]}" restart aisha-webhook-api-1 >/dev/null 2>&1
TAG=t2 HEALTH_TIMEOUT=60 bash -c "source scripts/deploy/common.sh && wait_healthy aisha-webhook-api-1"
load_finish restart
# The guide's smoke test: plain HTTP is told to use HTTPS (JSON, curl -f fails) ...
code=$(curl -s -o "$work/plain.json" -w '%{http_code}' -X POST http://localhost/api/v1/avatar/status_update -d '{}')
if [[ $code != 400 ]] || ! grep -q https_required "$work/plain.json"; then
  die "plain HTTP answered $code: $(cat "$work/plain.json")"
fi
# ... and send-test proves the real path: TLS, nginx, the signature, the database.
FAL_WEBHOOK_SECRET=$SECRET dist/webhook-api send-test --ca "$work/certs/ca.pem" \
  --url https://localhost:8443/api/v1/avatar/status_update >"$work/send-test.txt" ||
  die "send-test through nginx failed: $(cat "$work/send-test.txt")"
grep -q '"unmatched"' "$work/send-test.txt" || die "send-test: $(cat "$work/send-test.txt")"

phase "docker stop / start of api-1 under load"
requests_on_api_1() {
  operator_get http://127.0.0.1:8001/metrics |
    awk '/^webhook_http_requests_total\{.*route="status_update"/ {sum += $2} END {print sum + 0}'
}
load_start stop 5000
docker stop aisha-webhook-api-1 >/dev/null
sleep 5
docker start aisha-webhook-api-1 >/dev/null
TAG=t2 HEALTH_TIMEOUT=60 bash -c "source scripts/deploy/common.sh && wait_healthy aisha-webhook-api-1"
before=$(requests_on_api_1)
sleep 5
after=$(requests_on_api_1)
load_finish stop
((after > before)) || die "api-1 did not rejoin: $before -> $after status_update requests"
log "api-1 rejoined: $before -> $after requests"

phase "certificate: checked, a renewed one installed and reloaded"
WARN_DAYS=0 scripts/deploy/renew-certificate.sh --check >&2
# Without its certificate nginx says which file is missing, instead of restarting forever.
if docker run --rm "$REGISTRY/nginx-webhook:t2" >"$work/nocert.log" 2>&1; then
  die "nginx started without a certificate"
fi
grep -q "fullchain.pem is missing" "$work/nocert.log" || die "nginx without a certificate: $(cat "$work/nocert.log")"
served_serial() { openssl s_client -connect 127.0.0.1:8443 -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial; }
serial_before=$(served_serial)
# No ACME server is reachable here: a certificate from the test CA stands in for certbot's.
scripts/dev/certs.sh "$work/live" DNS:localhost,IP:127.0.0.1 "$work/certs"
CERTBOT_LIVE_DIR="$work/live" scripts/deploy/renew-certificate.sh --install-only localhost
sleep 1
[[ $(served_serial) != "$serial_before" ]] || die "nginx still serves the old certificate"
FAL_WEBHOOK_SECRET=$SECRET dist/webhook-api send-test --ca "$work/certs/ca.pem" \
  --url https://localhost:8443/api/v1/avatar/status_update >/dev/null || die "no callback after the reload"

phase "the guide's down"
"${guide[@]}" down --timeout 10 >/dev/null 2>&1 || true
[[ -z $(docker ps -aq --filter name=aisha-webhook-api --filter name=aisha-nginx-webhook) ]] ||
  die "the guide's down left containers: $(docker ps -a --filter name=aisha-)"
[[ ${guide_env_link:-0} == 1 ]] && rm -f prod.env

phase "backup, remove, restore"
TAG=t2 BACKUP_DIR="$work/backups" scripts/deploy/backup-images.sh
docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$REGISTRY/" | xargs -r docker rmi -f >/dev/null
# Without the registry: the cluster must come back from the archive alone.
kill "$registry_pid"
wait "$registry_pid" 2>/dev/null || true
registry_pid=""
TAG=t2 BACKUP_DIR="$work/backups" scripts/deploy/restore-images.sh
TAG=t2 HEALTH_TIMEOUT=90 scripts/deploy/webhook-complete.sh --no-build --no-pull
health https://localhost:8443/health | grep -qx '{"status":"ok"}' || die "restored cluster not healthy"
for port in 8001 8002; do
  operator_get "http://127.0.0.1:$port/health" | grep -q '"build":"t2+' ||
    die "restored instance on $port not serving t2"
done
