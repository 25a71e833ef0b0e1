#!/usr/bin/env bash
# Restores a backup of backup-db.sh into a fresh database beside the live one, then checks it:
# the checksum, the table counts taken with the backup, and that the service starts on it
# (`webhook-api migrate`: migrations and the bot's column types). Nothing live is touched;
# switching DATABASE_URL to the restored database is the operator's step, printed at the end.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/restore-db.sh [--dry-run] [--help] BACKUP.dump [NEW_DATABASE]

NEW_DATABASE (default: <live name>_restored_<UTC time>) is created on the server of
DATABASE_URL and must not exist yet. After the restore, the ids of webhook_events and file_jobs
continue \$RESTORE_ID_GAP (${RESTORE_ID_GAP:-1000000000}) past the restored ones: ids handed out after the
backup are remembered in Redis as announced (for a day), and must not be handed out again.
Settings (environment wins over prod.env): DATABASE_URL (as for backup-db.sh)
  WEBHOOK_API_BIN   the webhook-api that checks the restored database; default: webhook-api on
                    PATH, else the image \$REGISTRY/webhook-api:\$TAG run with the host's network
Needs pg_restore and psql (Debian: postgresql-client).
USAGE
}
args=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; die "unknown argument $arg" ;;
    *) args+=("$arg") ;;
  esac
done
((${#args[@]} >= 1 && ${#args[@]} <= 2)) || { usage; die "give the backup to restore"; }
dump=${args[0]}
[[ -f "$dump" && "$dump" == *.dump ]] || die "$dump is not a backup-db.sh .dump file"
base=${dump%.dump}
url=$(database_url)
live_db=${url##*/}
live_db=${live_db%%\?*}
new_db=${args[1]:-${live_db}_restored_$(date -u +%Y%m%d%H%M%S)}
[[ "$new_db" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "database name $new_db: lower-case letters, digits and _"
new_url="${url%/*}/$new_db"
[[ "$url" == *\?* ]] && new_url="$new_url?${url#*\?}"
gap=${RESTORE_ID_GAP:-1000000000}
[[ "$gap" =~ ^[0-9]+$ ]] || die "RESTORE_ID_GAP must be a number"

(cd "$(dirname "$dump")" && sha256sum --quiet -c "$(basename "$base").sha256") ||
  die "$dump does not match its checksum"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "dry-run: CREATE DATABASE $new_db; pg_restore $dump; ids +$gap; webhook-api migrate; compare counts" >&2
  exit 0
fi
require_postgres_client pg_restore psql

exists=$(psql -qAtX "$url" -c "SELECT 1 FROM pg_database WHERE datname = '$new_db'")
[[ -z "$exists" ]] || die "database $new_db exists: restore into a new one"
psql -qX -v ON_ERROR_STOP=1 "$url" -c "CREATE DATABASE $new_db" >/dev/null
log "restoring $dump into $new_db"
pg_restore --no-owner --exit-on-error -d "$new_url" "$dump"

for table in webhook_events file_jobs; do
  psql -qAtX -v ON_ERROR_STOP=1 "$new_url" -c \
    "SELECT setval(pg_get_serial_sequence('$table', 'id'), coalesce((SELECT max(id) FROM $table), 0) + $gap)" \
    >/dev/null 2>&1 || true
done

if [[ -n "${WEBHOOK_API_BIN:-}" ]] || command -v webhook-api >/dev/null; then
  checker=("${WEBHOOK_API_BIN:-webhook-api}" migrate)
else
  checker=(docker run --rm --network host -e DATABASE_URL "$REGISTRY/webhook-api:$TAG" migrate)
fi
DATABASE_URL="$new_url" LOG_LEVEL=warn "${checker[@]}" ||
  die "the service does not start on $new_db (above); the live database is untouched"

mismatch=0
while read -r table expected; do
  restored=$(psql -qAtX "$new_url" -c "SELECT count(*) FROM $table")
  if [[ "$restored" == "$expected" ]]; then
    log "  $table: $restored rows, as backed up"
  else
    log "  $table: $restored rows restored, $expected backed up"
    mismatch=1
  fi
done <"$base.counts"
((mismatch == 0)) || die "the restored counts differ from the backup's"
log "restored into $new_db and checked. To use it: set DATABASE_URL to .../$new_db in prod.env, then"
log "  scripts/deploy/update-webhook-images.sh --no-build   (the instances roll one at a time)"
echo "$new_db"
