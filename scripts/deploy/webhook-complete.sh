#!/usr/bin/env bash
# Complete deployment: build both images, push them to the registry, (re)create the cluster
# from the registry and wait until it is healthy.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/webhook-complete.sh [--dry-run] [--no-build] [--no-pull] [--help]

Builds webhook-api and nginx-webhook (tagged \$TAG; without one, <version>-<git revision>-<UTC
time>), pushes them, pulls them, checks $ENV_FILE against them (webhook-api check-config: a bad
variable stops here and nothing is touched), creates the network and starts the cluster; a
cluster that is already up is replaced one instance at a time, as update-webhook-images.sh does.
Waits for health on each container, on 127.0.0.1:8001 and :8002 and through nginx; then latest,
the version and the git revision tags move to the new images.
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

choose_build_tag
if ((BUILD)); then
  build_images
  push_images
fi
docker network inspect aisha_webhook_cluster >/dev/null 2>&1 || run docker network create aisha_webhook_cluster >/dev/null
if ((PULL)); then
  log "pulling $REGISTRY/*:$TAG"
  compose pull
fi
check_config
if [[ $(container_health aisha-webhook-api-1) == healthy && $(container_health aisha-webhook-api-2) == healthy ]]; then
  log "the cluster is up: replacing one instance at a time"
  roll_cluster
else
  log "starting the cluster"
  compose up -d --force-recreate --remove-orphans
  for container in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
    wait_healthy "$container" || { report_running; die "$container did not become healthy"; }
  done
fi
wait_http http://127.0.0.1:8001/health/ready || die "api-1 not ready on 8001"
wait_http http://127.0.0.1:8002/health/ready || die "api-2 not ready on 8002"
wait_http https://127.0.0.1:8443/health || die "nginx does not reach the instances"
record_applied_env
promote_images
log "cluster up: $REGISTRY/webhook-api:$TAG, $REGISTRY/nginx-webhook:$TAG"
