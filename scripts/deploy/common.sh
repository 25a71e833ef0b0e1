#!/usr/bin/env bash
# Shared by the deploy scripts: settings, dry-run aware execution, compose, health waits.
# Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ENV_FILE=${ENV_FILE:-$REPO_ROOT/prod.env}
# REGISTRY and TAG: the environment wins over prod.env.
env_setting() { # NAME DEFAULT
  local value=${!1:-}
  if [[ -z "$value" && -f "$ENV_FILE" ]]; then
    value=$(sed -n "s/^$1=//p" "$ENV_FILE" | tail -1)
  fi
  echo "${value:-$2}"
}
REGISTRY=$(env_setting REGISTRY localhost:5000)
TAG=$(env_setting TAG latest)
COMPOSE_FILE=${COMPOSE_FILE:-$REPO_ROOT/docker-compose.webhook.prod.yml}
# The guide's `docker-compose -f docker-compose.webhook.prod.yml --env-file prod.env ...` finds
# the same project through COMPOSE_PROJECT_NAME in prod.env.
COMPOSE_PROJECT=$(env_setting COMPOSE_PROJECT_NAME aisha-webhook)
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-120}
DRY_RUN=${DRY_RUN:-0}
# shellcheck disable=SC2034 # used by the scripts that source this file
API_SERVICES=(aisha-webhook-api-1 aisha-webhook-api-2)
# shellcheck disable=SC2034
NGINX_SERVICE=aisha-nginx-webhook

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# DATABASE_URL (environment, else prod.env) in the form libpq tools take: prod.env may spell it
# postgresql+asyncpg:// for the bot.
database_url() {
  local url
  url=$(env_setting DATABASE_URL "")
  [[ -n "$url" ]] || die "DATABASE_URL is not set (environment or $ENV_FILE)"
  echo "${url/postgresql+asyncpg:\/\//postgresql://}"
}

# The flags of the build-and-deploy scripts; the caller defines `usage`.
# shellcheck disable=SC2034 # BUILD and PULL are read by the scripts that source this file
BUILD=1
# shellcheck disable=SC2034
PULL=1
# shellcheck disable=SC2034
parse_flags() {
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --no-build) BUILD=0 ;;
      --no-pull) PULL=0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage; die "unknown argument $arg" ;;
    esac
  done
}
die() { log "ERROR: $*"; exit 1; }

# The flags of the scripts that take no others: --dry-run and --help; the caller defines `usage`.
parse_preview_flags() {
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage; die "unknown argument $arg" ;;
    esac
  done
}

# PostgreSQL's client tools, or a clear message saying which package has them.
require_postgres_client() { # TOOL...
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install postgresql-client"
  done
}

# Runs a command, or only shows it with --dry-run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "dry-run: $*" >&2
  else
    "$@"
  fi
}

compose() { # compose with the cluster's project, env file and TAG
  run env TAG="$TAG" REGISTRY="$REGISTRY" ENV_FILE="$ENV_FILE" docker-compose -p "$COMPOSE_PROJECT" \
    --env-file "$ENV_FILE" -f "$COMPOSE_FILE" "$@"
}

version() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/services/webhook-api/Cargo.toml" | head -1; }
git_revision() { git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown; }

# A build's own tag, never reused: version, git revision, build time (UTC).
build_tag() { echo "$(version)-$(git_revision)-$(date -u +%Y%m%d%H%M%S)"; }

# When building, TAG names the new images: without one (or with `latest`, which only ever
# moves to a build that runs healthy) each build gets its own.
choose_build_tag() {
  if ((BUILD)) && [[ "$TAG" == latest ]]; then
    TAG=$(build_tag)
    log "new images are tagged $TAG"
  fi
}

# Builds both images, tagged $TAG only. BUILD_ARGS (space-separated KEY=VALUE) reach both
# builds, e.g. base images; API_BUILD_TARGET=prebuilt uses dist/webhook-api instead of
# compiling in the image.
build_images() {
  local rev ver args=()
  rev=$(git_revision)
  ver=$(version)
  for arg in ${BUILD_ARGS:-}; do args+=(--build-arg "$arg"); done
  local api_target=()
  [[ -n "${API_BUILD_TARGET:-}" ]] && api_target=(--target "$API_BUILD_TARGET")
  for image in webhook-api nginx-webhook; do
    local dockerfile=$REPO_ROOT/docker/webhook-api/Dockerfile target=("${api_target[@]}") content=()
    if [[ $image == nginx-webhook ]]; then
      dockerfile=$REPO_ROOT/docker/nginx/Dockerfile target=() content=(--build-arg "CONTENT=$(nginx_content)")
    fi
    log "building $REGISTRY/$image:$TAG ($ver, $rev)"
    run docker build "${args[@]}" "${target[@]}" "${content[@]}" \
      --build-arg "VERSION=$ver" --build-arg "GIT_REVISION=$rev" --build-arg "IMAGE_TAG=$TAG" \
      -f "$dockerfile" -t "$REGISTRY/$image:$TAG" "$REPO_ROOT"
  done
}

push_images() {
  for image in webhook-api nginx-webhook; do
    run docker push "$REGISTRY/$image:$TAG" >/dev/null
    log "pushed $REGISTRY/$image:$TAG"
  done
}

# Once the cluster runs healthy on $TAG: latest, the version and the git revision point at it
# (on this host; in the registry too unless --no-pull says it is out of reach).
promote_images() {
  local ver rev
  ver=$(version)
  rev=$(git_revision)
  for image in webhook-api nginx-webhook; do
    for alias in latest "$ver" "$rev"; do
      [[ "$alias" == "$TAG" ]] && continue
      run docker tag "$REGISTRY/$image:$TAG" "$REGISTRY/$image:$alias"
      ((PULL)) || continue
      run docker push "$REGISTRY/$image:$alias" >/dev/null || log "pushing $image:$alias failed"
    done
  done
  log "latest, $ver and $rev now name $TAG"
}

# The new env file against the image that will read it, in a throw-away container, before
# anything is recreated: a bad variable stops here with the service's own message.
check_config() {
  log "checking $ENV_FILE with $REGISTRY/webhook-api:$TAG"
  run docker run --rm --env-file "$ENV_FILE" "$REGISTRY/webhook-api:$TAG" check-config >&2 ||
    die "$ENV_FILE is not valid for webhook-api:$TAG (the line above says why); nothing was changed"
}

# The env file the running containers were last started with, kept beside prod.env, so a
# rollback also restores their configuration.
applied_env_file() { if [[ -f "$ENV_FILE.applied" ]]; then echo "$ENV_FILE.applied"; else echo "$ENV_FILE"; fi; }
record_applied_env() { run install -m 600 "$ENV_FILE" "$ENV_FILE.applied"; }

running_tag() { docker inspect -f '{{.Config.Image}}' "$1" 2>/dev/null | sed 's/.*://'; }
# By image ID: what a rollback returns to, whatever the registry's tags say by then.
running_image() { docker inspect -f '{{.Image}}' "$1" 2>/dev/null; }

# What each container runs, truthfully.
report_running() {
  local container
  for container in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
    log "$container: $(running_tag "$container" || echo '?') (image $(running_image "$container" | cut -c8-19)), $(container_health "$container")"
  done
}

# nginx 1.22 resolves the instances' names when it (re)loads its configuration; a recreated
# container may have a new address, so nginx reloads (gracefully) after each replacement.
reload_nginx() {
  if [[ "$DRY_RUN" == 1 ]] || docker inspect "$NGINX_SERVICE" >/dev/null 2>&1; then
    run docker kill -s HUP "$NGINX_SERVICE" >/dev/null || log "nginx reload failed"
  fi
}

# What the nginx image is made of: its files in the repository and the base it is built on
# (BUILD_ARGS), as one digest; labelled on the image, so that whatever the build cache kept,
# two tags of the same nginx say so.
nginx_content() {
  (cd "$REPO_ROOT" && find nginx docker/nginx -type f -print0 | sort -z | xargs -0 sha256sum &&
    echo "${BUILD_ARGS:-}") | sha256sum | cut -c1-16
}
content_label() { docker image inspect -f '{{index .Config.Labels "org.aisha.webhook.content"}}' "$1" 2>/dev/null; }

# Whether the nginx of $TAG differs from the running one in more than its tag: what its image
# is made of, or its compose settings (read with the running tag).
nginx_changed() {
  local running running_tag content settings
  running=$(running_image "$NGINX_SERVICE") || return 0
  running_tag=$(running_tag "$NGINX_SERVICE") || return 0
  content=$(content_label "$running") || return 0
  [[ -n "$content" && "$content" != unknown && "$content" == "$(content_label "$REGISTRY/nginx-webhook:$TAG")" ]] || return 0
  settings=$(TAG=$running_tag compose config --hash "$NGINX_SERVICE" | awk '{print $2}')
  [[ -n "$settings" && "$settings" == "$(docker inspect -f '{{index .Config.Labels "com.docker.compose.config-hash"}}' "$NGINX_SERVICE")" ]] || return 0
  return 1
}

# Replaces one instance with $TAG; if it does not become healthy, puts back the image it ran
# (by ID, tagged locally rollback-SERVICE) with the env file it ran with, and fails.
roll_instance() { # SERVICE
  local service=$1 previous_image previous_tag
  previous_image=$(running_image "$service" || true)
  previous_tag=$(running_tag "$service" || true)
  log "$service: ${previous_tag:-not running} -> $TAG"
  ((PULL)) && compose pull "$service"
  compose up -d --no-deps --force-recreate "$service"
  if wait_healthy "$service"; then
    reload_nginx
    return 0
  fi
  [[ -n "$previous_image" ]] || return 1
  log "$service: rolling back to the image it ran before ($previous_tag, ${previous_image:7:12})"
  run docker tag "$previous_image" "$REGISTRY/webhook-api:rollback-$service"
  ENV_FILE=$(applied_env_file) TAG=rollback-$service compose up -d --no-deps --force-recreate "$service"
  wait_healthy "$service" || log "$service: the rollback did not become healthy either"
  reload_nginx
  return 1
}

# Both instances one at a time, then nginx; on a failure, what runs is reported.
roll_cluster() {
  local service
  for service in "${API_SERVICES[@]}"; do
    roll_instance "$service" || { report_running; die "update to $TAG failed on $service; nothing else was changed"; }
  done
  ((PULL)) && compose pull "$NGINX_SERVICE"
  # Replacing nginx refuses connections for a moment (a sender that does not retry, GitHub or
  # Plane, loses what it sent then): done only when its image really changed. The same image
  # under a new tag keeps running; the reload after each instance gave it their addresses.
  if [[ "$DRY_RUN" != 1 ]] && ! nginx_changed; then
    log "$NGINX_SERVICE: the same files and settings under $TAG; not restarted"
    return 0
  fi
  compose up -d --no-deps --force-recreate "$NGINX_SERVICE"
  wait_healthy "$NGINX_SERVICE" || { report_running; die "nginx-webhook:$TAG is not healthy"; }
}

container_health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo missing; }

# Waits until the container's own health check says healthy; on failure shows its logs.
wait_healthy() { # CONTAINER
  [[ "$DRY_RUN" == 1 ]] && { echo "dry-run: wait until $1 is healthy" >&2; return 0; }
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) state
  while ((SECONDS < deadline)); do
    state=$(container_health "$1")
    [[ "$state" == healthy ]] && { log "$1 healthy"; return 0; }
    [[ "$state" == unhealthy || "$state" == exited || "$state" == dead ]] && break
    sleep 2
  done
  log "$1 is not healthy (state: $(container_health "$1")); its last log lines:"
  docker logs --tail 50 "$1" >&2 || true
  return 1
}

# GET URL until 200 within HEALTH_TIMEOUT seconds.
wait_http() { # URL
  [[ "$DRY_RUN" == 1 ]] && { echo "dry-run: wait for $1" >&2; return 0; }
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  until curl -fsk -o /dev/null --max-time 5 "$1"; do
    ((SECONDS < deadline)) || { log "$1 did not answer 200 within ${HEALTH_TIMEOUT}s"; return 1; }
    sleep 2
  done
  log "$1 answers"
}
