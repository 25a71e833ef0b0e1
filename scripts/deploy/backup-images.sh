#!/usr/bin/env bash
# Saves the cluster's images (docker save) so they can be restored without the registry.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/backup-images.sh [--dry-run] [--help]

Writes \$BACKUP_DIR/webhook-images-\$TAG.tar.gz with $REGISTRY/webhook-api:\$TAG and
$REGISTRY/nginx-webhook:\$TAG, and a .sha256 beside it.
Settings: REGISTRY=$REGISTRY   TAG=$TAG   BACKUP_DIR=${BACKUP_DIR:-$REPO_ROOT/backups}
USAGE
}
parse_preview_flags "$@"

dir=${BACKUP_DIR:-$REPO_ROOT/backups}
file="$dir/webhook-images-$TAG.tar.gz"
images=("$REGISTRY/webhook-api:$TAG" "$REGISTRY/nginx-webhook:$TAG")
run mkdir -p "$dir"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "dry-run: docker save ${images[*]} | gzip > $file" >&2
  exit 0
fi
for image in "${images[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image" >/dev/null || die "$image not found locally or in the registry"
done
docker save "${images[@]}" | gzip -1 >"$file.partial"
mv "$file.partial" "$file"
(cd "$dir" && sha256sum "$(basename "$file")" >"$(basename "$file").sha256")
log "saved ${images[*]} to $file ($(du -h "$file" | cut -f1))"
