#!/usr/bin/env bash
# The webhook cluster as a Docker Swarm stack on a real three-node swarm on this machine: three
# extra Docker engines, one manager and two workers, each in its own network namespace
# (scripts/test/swarm-nodes.sh), deployed with the operators' scripts/deploy/swarm.sh from a
# registry every node pulls from, and tested under a steady load of signed callbacks.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/test/swarm.sh [--help]

Phases (each timed): base images · release binary · images t1, t2 and a broken t3 · three
engines and the swarm · registry · database, cache, S3 (outside the stack, as in production) ·
deploy t1 · no secret in any service spec · the operators' API only on the overlay network ·
rolling update to t2 under load · broken t3 rolled back by Swarm under load · scale 2 → 4 → 2
under load · a worker node lost under load · cleanup.
Under load, every acknowledged callback must be applied exactly once; 5xx answers and broken
connections are counted and reported.
Settings (environment, defaults shown):
  LOAD_RATE=${LOAD_RATE:-20}   signed callbacks per second during the load phases
Uses the host bridge wbswarm0 (10.77.0.0/24) and port 5000 on it. Needs root and Docker.
USAGE
}
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
work=$(mktemp -d /tmp/webhook-swarm.XXXXXX)
LOAD_RATE=${LOAD_RATE:-20}
# Avatars made for each load phase: more than a phase sends at LOAD_RATE.
LOAD_COUNT=$((LOAD_RATE * 200))
HOST_ADDRESS=10.77.0.1
EDGE_ADDRESS=10.77.0.11
export REGISTRY="$HOST_ADDRESS:5000"
export ENV_FILE="$work/prod.env"
export SWARM_DIR="$work/swarm"
export STACK_NAME=aisha
SECRET=swarm-test-secret
OPERATOR_TOKEN=$(openssl rand -hex 32)
DEPS=aisha-webhook-swarm-deps
TEST_NAME=swarm
LOAD_URL=https://$EDGE_ADDRESS:8443/api/v1/avatar/status_update
nodes=scripts/test/swarm-nodes.sh
# shellcheck source=scripts/test/lib.sh
source "$repo/scripts/test/lib.sh"

node() { docker -H "unix:///var/lib/webhook-swarm/node$1/docker.sock" "${@:2}"; }
manager() { node 1 "$@"; }
swarm() { DOCKER_HOST=unix:///var/lib/webhook-swarm/node1/docker.sock scripts/deploy/swarm.sh "$@"; }
api=aisha_webhook-api

cleanup() {
  local status=$?
  phase "cleanup"
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null
  if ((status != 0)); then
    # (service logs waits for every node, a lost one too: bounded)
    timeout 20 docker -H unix:///var/lib/webhook-swarm/node1/docker.sock service ps --no-trunc "$api" 2>&1 |
      tail -12 | sed 's/^/    /' >&2 || true
    for service in "$api" aisha_nginx; do
      timeout 20 docker -H unix:///var/lib/webhook-swarm/node1/docker.sock service logs --tail 10 "$service" 2>&1 |
        sed 's/^/    /' >&2 || true
    done
  fi
  manager stack rm aisha >/dev/null 2>&1 || true
  "$nodes" down || true
  docker rm -f "$DEPS" >/dev/null 2>&1 || true
  [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$REGISTRY/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work" "$repo/dist/webhook-api"
  print_timings "$status"
}
trap cleanup EXIT

# Replicas running, as Swarm counts them: "2/2".
replicas() { manager service ls --filter "name=$api" --format '{{.Replicas}}'; }
# The engine number of each running replica of the API, one per line (nodes are webhook-nodeI).
replica_nodes() {
  manager service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' "$api" |
    awk '$2 == "Running" { sub("webhook-node", "", $1); print $1 }'
}
running_image() { manager service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$api"; }

phase "prerequisites"
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, extra Docker engines)"
docker info >/dev/null 2>&1 || die "no Docker engine (docker info fails)"
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v s3s-fs >/dev/null || cargo install --quiet --locked s3s-fs@0.14.1 --features binary
"$nodes" down >/dev/null 2>&1 || true

base_images_and_release_binary

phase "images t1, t2 and a broken t3"
build() { TAG=$1 bash -c 'source scripts/deploy/common.sh && build_images' >/dev/null 2>"$work/build.log" ||
  die "building $1: $(tail -5 "$work/build.log")"; }
build t1
build t2
# t3 passes check-config, then never starts: Swarm must roll it back by itself.
cp dist/webhook-api "$work/webhook-api.good"
# shellcheck disable=SC2016 # $1 is the stand-in's own argument
printf '#!/bin/sh\n[ "$1" = check-config ] && { echo "configuration ok"; exit 0; }\necho "broken build" >&2\nexit 1\n' >dist/webhook-api
build t3
cp "$work/webhook-api.good" dist/webhook-api

phase "three engines and the swarm"
SWARM_INSECURE_REGISTRY=$REGISTRY "$nodes" up 3
manager swarm init --advertise-addr "$EDGE_ADDRESS" >/dev/null
join_token=$(manager swarm join-token -q worker)
for i in 2 3; do node "$i" swarm join --token "$join_token" "$EDGE_ADDRESS:2377" >/dev/null; done
# nginx runs on the manager, the edge; the API replicas anywhere.
manager node update --label-add webhook.edge=true webhook-node1 >/dev/null
[[ $(manager node ls -q | wc -l) == 3 ]] || die "the swarm has $(manager node ls -q | wc -l) nodes, not 3"

phase "registry (every node pulls from it)"
start_registry "$REGISTRY"
# The host's own engine may not push to a plain-HTTP registry off loopback; the manager's may.
docker save "$REGISTRY"/{webhook-api,nginx-webhook}:{t1,t2,t3} | manager load >/dev/null
for image in "$REGISTRY"/{webhook-api,nginx-webhook}:{t1,t2,t3}; do manager push -q "$image" >/dev/null; done
scripts/deploy/registry.sh all | sed 's/^/  /' >&2

phase "database, cache, S3 (outside the stack)"
start_deps "$DEPS_IMAGE" -p "$HOST_ADDRESS:5432:5432" -p "$HOST_ADDRESS:6379:6379" \
  -p "$HOST_ADDRESS:9000:9000" -p "$HOST_ADDRESS:8080:8080"
make_certs "$work/certs" "DNS:localhost,IP:$EDGE_ADDRESS"
# The engines' open-file limit is this shell's: no container may ask for more.
nofile=$(ulimit -Hn)
[[ "$nofile" =~ ^[0-9]+$ ]] || nofile=65536
cat >"$ENV_FILE" <<ENV
REGISTRY=$REGISTRY
TAG=t1
API_REPLICAS=2
TLS_CERT_DIR=$work/certs
NGINX_NOFILE=$((nofile > 65536 ? 65536 : nofile))
WEBHOOK_RATE_LIMIT=1000r/s
WEBHOOK_RATE_BURST=1000
DATABASE_URL=postgresql+asyncpg://webhook:webhook@$HOST_ADDRESS:5432/webhook
REDIS_URL=redis://$HOST_ADDRESS:6379/0
MINIO_ENDPOINT=$HOST_ADDRESS:9000
MINIO_ACCESS_KEY=containers-access
MINIO_SECRET_KEY=containers-secret
MINIO_BUCKET_NAME=avatars
MINIO_SECURE=false
FAL_WEBHOOK_SECRET=$SECRET
OPERATOR_TOKENS=swarm:read+replay:$OPERATOR_TOKEN
LOG_LEVEL=info
ENVIRONMENT=staging
# The bot's own secrets may share prod.env: the stack must leave them out.
TELEGRAM_BOT_TOKEN=bot-token-never-in-the-stack
ENV

phase "deploy t1"
swarm deploy
[[ $(replicas) == 2/2 ]] || die "API replicas: $(replicas)"
curl -fsS --cacert "$work/certs/ca.pem" "https://$EDGE_ADDRESS:8443/health" | grep -qx '{"status":"ok"}' ||
  die "health through nginx on the edge node"
FAL_WEBHOOK_SECRET=$SECRET dist/webhook-api send-test --ca "$work/certs/ca.pem" --url "$LOAD_URL" >/dev/null ||
  die "a signed callback through the stack"

phase "no secret in any service spec"
for service in $(manager stack services -q aisha); do manager service inspect "$service"; done >"$work/inspect.json"
for value in "$SECRET" webhook:webhook containers-secret "$OPERATOR_TOKEN" bot-token-never-in-the-stack \
  "$(sed -n 2p "$work/certs/privkey.pem")"; do
  ! grep -qF -- "$value" "$work/inspect.json" || die "docker service inspect shows a secret (${value:0:6}…)"
done
grep -q '"DATABASE_URL_FILE=/run/secrets/DATABASE_URL"' "$work/inspect.json" || die "the API does not read DATABASE_URL_FILE"
log "docker service inspect of $(manager stack services -q aisha | wc -l) services: no secret, only *_FILE paths"

phase "operators' API on the overlay network only"
for address in 10.77.0.11 10.77.0.12 10.77.0.13; do
  ! curl -fsS -m 3 -o /dev/null "http://$address:8000/health" 2>/dev/null || die "an instance answers on $address:8000"
done
overlay_get() { manager run --rm --network aisha_webhook --entrypoint curl "$REGISTRY/webhook-api:t1" -fsS -m 5 \
  -H "Authorization: Bearer $OPERATOR_TOKEN" "$@"; }
overlay_get http://webhook-api:8000/health | grep -q '"status":"ok"' || die "the operators' health on the overlay network"
[[ $(manager run --rm --network aisha_webhook --entrypoint curl "$REGISTRY/webhook-api:t1" -s -o /dev/null -w '%{http_code}' \
  http://webhook-api:8000/metrics) == 401 ]] || die "/metrics answers without a token on the overlay network"

phase "rolling update to t2 under load"
load_start rolling "$LOAD_COUNT"
started=$SECONDS
swarm update t2
log "update to t2: $((SECONDS - started)) s"
load_finish rolling
[[ $(running_image) == "$REGISTRY/webhook-api:t2@"* ]] || die "the API runs $(running_image), not t2"
instances=$(psql_deps "SELECT string_agg(DISTINCT instance_id, ' ' ORDER BY instance_id) FROM webhook_events WHERE fal_request_id LIKE 'rolling-%'")
log "instances that took the rolling phase's callbacks: $instances"
[[ "$instances" == *"$api.1"* && "$instances" == *"$api.2"* ]] || die "replicas do not report their task slots: $instances"

phase "broken t3 rolled back by Swarm under load"
load_start broken "$LOAD_COUNT"
started=$SECONDS
if swarm update t3 2>"$work/broken.log"; then die "the update to a broken image succeeded"; fi
log "broken update, rolled back by Swarm: $((SECONDS - started)) s: $(grep -o 'rolled it back.*' "$work/broken.log" | head -1)"
load_finish broken
grep -q "rolled it back" "$work/broken.log" || die "the broken update did not end in Swarm's rollback: $(tail -3 "$work/broken.log")"
[[ $(running_image) == "$REGISTRY/webhook-api:t2@"* ]] || die "after the rollback the API runs $(running_image)"

phase "scale 2 → 4 → 2 under load"
load_start scale "$LOAD_COUNT"
started=$SECONDS
swarm scale 4
log "scale to 4: $((SECONDS - started)) s, replicas on engines $(replica_nodes | sort | tr '\n' ' ')"
sleep 5
started=$SECONDS
swarm scale 2
log "scale to 2: $((SECONDS - started)) s"
load_finish scale

phase "a worker node lost under load"
lost=$(replica_nodes | grep -v '^1$' | head -1)
[[ -n "$lost" ]] || die "no API replica runs on a worker: $(replica_nodes | tr '\n' ' ')"
load_start lost "$LOAD_COUNT"
started=$SECONDS
"$nodes" kill "$lost"
log "engine $lost killed (its link down, every process of it gone)"
for _ in $(seq 1 120); do
  [[ $(manager node inspect -f '{{.Status.State}}' "webhook-node$lost") == down ]] && break
  sleep 1
done
[[ $(manager node inspect -f '{{.Status.State}}' "webhook-node$lost") == down ]] || die "the swarm never saw engine $lost go down"
detected=$((SECONDS - started))
# (Swarm's own count, `docker service ls`, goes on counting the lost node's task as running,
# 3/2, until the node comes back: the tasks that run elsewhere are what counts.)
for _ in $(seq 1 120); do
  [[ $(replica_nodes | grep -cvx "$lost") == 2 ]] && break
  sleep 1
done
[[ $(replica_nodes | grep -cvx "$lost") == 2 ]] ||
  die "the lost node's replicas were not rescheduled: engines $(replica_nodes | tr '\n' ' ') ($(replicas))"
log "node loss: engine $lost seen down after $detected s, its replica running elsewhere after $((SECONDS - started)) s (engines $(replica_nodes | sort | tr '\n' ' '))"
sleep 5
load_finish lost
swarm status >&2 || true
