#!/usr/bin/env bash
# Lists the images and tags in the private registry through its HTTP API (v2).
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/registry.sh [images|tags IMAGE|all] [--help]

  images       the repositories in the registry (GET /v2/_catalog)
  tags IMAGE   the tags of one image (GET /v2/IMAGE/tags/list)
  all          every image with its tags (the default)
Settings: REGISTRY=$REGISTRY   REGISTRY_SCHEME=${REGISTRY_SCHEME:-http}   REGISTRY_AUTH=user:password (optional)
USAGE
}

base="${REGISTRY_SCHEME:-http}://$REGISTRY/v2"
auth=()
[[ -n "${REGISTRY_AUTH:-}" ]] && auth=(-u "$REGISTRY_AUTH")
get() { curl -fsS "${auth[@]}" "$base/$1" || die "GET $base/$1 failed"; }
images() { get _catalog | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin).get("repositories") or []))'; }
tags() { get "$1/tags/list" | python3 -c 'import json,sys; print("\n".join(sorted(json.load(sys.stdin).get("tags") or [])))'; }

case "${1:-all}" in
  images) images ;;
  tags) [[ -n "${2:-}" ]] || { usage; exit 2; }; tags "$2" ;;
  all) for image in $(images); do echo "$image: $(tags "$image" | tr '\n' ' ')"; done ;;
  -h|--help) usage ;;
  *) usage; exit 2 ;;
esac
