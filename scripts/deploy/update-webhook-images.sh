#!/usr/bin/env bash
# Rolling update to a new tag, one instance at a time, with automatic rollback.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: TAG=new-tag scripts/deploy/update-webhook-images.sh [--dry-run] [--no-build] [--help]

Builds and pushes \$TAG (unless --no-build), then replaces aisha-webhook-api-1 and then
aisha-webhook-api-2 with it. While one instance restarts, nginx sends every callback to the
other (the stopped one drains in-flight requests on SIGTERM; connect errors go to the next
upstream). Each new instance must pass its health check before the next is touched; if it
does not, it is put back on the tag it ran before and the script fails. nginx is updated last.
  --dry-run    print what would be done
  --no-build   the tag is already in the registry
Settings (environment, else prod.env, else the default shown):
  REGISTRY=$REGISTRY   TAG=$TAG
  ENV_FILE=$ENV_FILE   HEALTH_TIMEOUT=$HEALTH_TIMEOUT
  BUILD_ARGS="${BUILD_ARGS:-}"   API_BUILD_TARGET=${API_BUILD_TARGET:-}
USAGE
}

parse_flags "$@"
[[ -f "$ENV_FILE" || "$DRY_RUN" == 1 ]] || die "$ENV_FILE missing"

if ((BUILD)); then
  build_images
  push_images
fi
new_tag=$TAG

running_tag() { # CONTAINER → the tag its image was started with
  docker inspect -f '{{.Config.Image}}' "$1" 2>/dev/null | sed 's/.*://'
}

replace() { # SERVICE TAG
  TAG=$2 compose pull "$1"
  TAG=$2 compose up -d --no-deps --force-recreate "$1"
}

# nginx 1.22 resolves the instances' names when it (re)loads its configuration; a recreated
# container may have a new address, so nginx reloads (gracefully) after each replacement.
reload_nginx() {
  if [[ "$DRY_RUN" == 1 ]] || docker inspect "$NGINX_SERVICE" >/dev/null 2>&1; then
    run docker kill -s HUP "$NGINX_SERVICE" >/dev/null || log "nginx reload failed"
  fi
}

for service in "${API_SERVICES[@]}"; do
  previous=$(running_tag "$service" || true)
  previous=${previous:-latest}
  log "$service: $previous -> $new_tag"
  replace "$service" "$new_tag"
  if ! wait_healthy "$service"; then
    log "$service: rolling back to $previous"
    replace "$service" "$previous"
    wait_healthy "$service" || log "$service: rollback did not become healthy either"
    reload_nginx
    die "update to $new_tag failed on $service; it runs $previous again"
  fi
  reload_nginx
done

replace "$NGINX_SERVICE" "$new_tag"
wait_healthy "$NGINX_SERVICE" || die "nginx-webhook:$new_tag is not healthy"
wait_http https://127.0.0.1:8443/health || die "nginx does not reach the instances"
log "updated to $new_tag"
