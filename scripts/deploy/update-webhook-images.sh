#!/usr/bin/env bash
# Rolling update, one instance at a time, with automatic rollback; also rolls out a changed
# prod.env (--no-build).
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/update-webhook-images.sh [--dry-run] [--no-build] [--help]

Builds and pushes new images (unless --no-build), checks $ENV_FILE against them
(webhook-api check-config, in a throw-away container: a bad variable stops here and nothing is
touched), then replaces aisha-webhook-api-1 and then aisha-webhook-api-2. While one instance
restarts, nginx sends every callback to the other. Each new instance must pass its health
check before the next is touched; if it does not, it gets back the image it ran before (by
image ID, whatever the tags say) and the env file it ran with, and the script fails saying what
each container runs. nginx is replaced last, and only when its image changed (a new nginx
refuses connections for a moment); then latest, the version and the git revision tags
move to the new images.
Without TAG (or with TAG=latest) a build is tagged <version>-<git revision>-<UTC time>.
  --dry-run    print what would be done
  --no-build   deploy TAG from the registry; with the running TAG: roll out a changed prod.env
Settings (environment, else prod.env, else the default shown):
  REGISTRY=$REGISTRY   TAG=$TAG
  ENV_FILE=$ENV_FILE   HEALTH_TIMEOUT=$HEALTH_TIMEOUT
  BUILD_ARGS="${BUILD_ARGS:-}"   API_BUILD_TARGET=${API_BUILD_TARGET:-}
USAGE
}

parse_flags "$@"
[[ -f "$ENV_FILE" || "$DRY_RUN" == 1 ]] || die "$ENV_FILE missing"

choose_build_tag
if ((BUILD)); then
  build_images
  push_images
fi
((PULL)) && compose pull aisha-webhook-api-1
check_config
roll_cluster
wait_http https://127.0.0.1:8443/health || die "nginx does not reach the instances"
record_applied_env
promote_images
report_running
log "updated to $TAG"
