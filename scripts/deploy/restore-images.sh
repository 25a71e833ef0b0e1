#!/usr/bin/env bash
# Loads images saved by backup-images.sh (docker load), checking the archive first.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/restore-images.sh [ARCHIVE] [--push] [--dry-run] [--help]

Loads ARCHIVE (default \$BACKUP_DIR/webhook-images-\$TAG.tar.gz) after checking its .sha256;
with --push, pushes the images back to the registry too.
Settings: REGISTRY=$REGISTRY   TAG=$TAG   BACKUP_DIR=${BACKUP_DIR:-$REPO_ROOT/backups}
USAGE
}
archive=""
push=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --push) push=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; die "unknown argument $arg" ;;
    *) archive=$arg ;;
  esac
done
archive=${archive:-${BACKUP_DIR:-$REPO_ROOT/backups}/webhook-images-$TAG.tar.gz}
[[ -f "$archive" || "$DRY_RUN" == 1 ]] || die "$archive not found"
if [[ -f "$archive.sha256" ]]; then
  (cd "$(dirname "$archive")" && sha256sum -c --quiet "$(basename "$archive").sha256") || die "$archive is corrupt"
fi
if [[ "$DRY_RUN" == 1 ]]; then
  echo "dry-run: gunzip -c $archive | docker load" >&2
else
  gunzip -c "$archive" | docker load >&2
fi
if ((push)); then
  for image in webhook-api nginx-webhook; do run docker push "$REGISTRY/$image:$TAG" >/dev/null; done
  log "pushed the restored images to $REGISTRY"
fi
log "restored from $archive"
