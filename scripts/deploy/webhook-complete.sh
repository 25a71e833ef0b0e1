#!/usr/bin/env bash
# Complete deployment: build both images, push them to the registry, (re)create the cluster
# from the registry and wait until it is healthy.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/webhook-complete.sh [--dry-run] [--no-build] [--no-pull] [--help]

Builds webhook-api and nginx-webhook, tags them \$TAG, the version, the git revision and latest,
pushes them, creates the network, replaces the containers (pulling from the registry), and waits
for health on each container, on 127.0.0.1:8001 and :8002 and through nginx.
  --dry-run    print what would be done
  --no-build   deploy images already in the registry
  --no-pull    use the images already on this host (restored from a backup, registry down)
Settings (environment, else prod.env, else the default shown):
  REGISTRY=$REGISTRY   TAG=$TAG
  ENV_FILE=$ENV_FILE
  BUILD_ARGS="${BUILD_ARGS:-}"   e.g. "RUNTIME_IMAGE=local/bookworm:1 RUST_IMAGE=local/rust:1"
  API_BUILD_TARGET=${API_BUILD_TARGET:-}   "prebuilt" to use dist/webhook-api
  HEALTH_TIMEOUT=$HEALTH_TIMEOUT   seconds to wait for health
USAGE
}

parse_flags "$@"
[[ -f "$ENV_FILE" || "$DRY_RUN" == 1 ]] || die "$ENV_FILE missing: copy prod.env.example and fill it in"

if ((BUILD)); then
  build_images
  push_images
fi
docker network inspect aisha_webhook_cluster >/dev/null 2>&1 || run docker network create aisha_webhook_cluster >/dev/null
if ((PULL)); then
  log "pulling $REGISTRY/*:$TAG"
  compose pull
fi
log "replacing the containers"
compose up -d --force-recreate --remove-orphans
for container in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
  wait_healthy "$container" || die "$container did not become healthy"
done
wait_http http://127.0.0.1:8001/health/ready || die "api-1 not ready on 8001"
wait_http http://127.0.0.1:8002/health/ready || die "api-2 not ready on 8002"
wait_http https://127.0.0.1:8443/health || die "nginx does not reach the instances"
log "cluster up: $REGISTRY/webhook-api:$TAG, $REGISTRY/nginx-webhook:$TAG"
