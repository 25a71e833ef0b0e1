#!/usr/bin/env bash
# Backs up the PostgreSQL database the cluster writes to (the bot's: its tables and ours), as
# pg_dump's custom format, from one consistent snapshot; counts of the tables taken in that same
# snapshot are kept beside it, so a restore can be checked.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/backup-db.sh [--dry-run] [--help]

Writes \$BACKUP_DIR/webhook-db-<UTC time>.dump (pg_dump -Fc) with .sha256 and .counts beside
it, then keeps the newest \$BACKUP_KEEP backups and removes older ones.
Settings (environment wins over prod.env):
  DATABASE_URL   the database (postgresql:// or postgresql+asyncpg://, as in prod.env); from
                 this host: a compose service name such as postgres is not resolvable here,
                 give the address the host reaches it at
  BACKUP_DIR=${BACKUP_DIR:-$REPO_ROOT/backups}   BACKUP_KEEP=${BACKUP_KEEP:-14}
Needs pg_dump and psql of the server's major version or newer (Debian: postgresql-client).
Restore with scripts/deploy/restore-db.sh.
USAGE
}
parse_preview_flags "$@"

url=$(database_url)
dir=${BACKUP_DIR:-$REPO_ROOT/backups}
keep=${BACKUP_KEEP:-14}
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "BACKUP_KEEP must be a positive number, not $keep"
name="webhook-db-$(date -u +%Y%m%dT%H%M%S.%3NZ)"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "dry-run: pg_dump -Fc (one snapshot, with table counts) > $dir/$name.dump; keep $keep" >&2
  exit 0
fi
require_postgres_client pg_dump psql
mkdir -p "$dir"

# One REPEATABLE READ transaction exports its snapshot: the counts and pg_dump see the same data.
# (stdbuf: psql writing to a pipe would hold its answers in its buffer)
coproc SNAPSHOT { stdbuf -oL psql -qAtX -v ON_ERROR_STOP=1 "$url" 2>&1; }
# Copied now: bash unsets SNAPSHOT_PID (and SNAPSHOT) as soon as it reaps the finished psql.
# shellcheck disable=SC2153 # set by coproc
snapshot_pid=$SNAPSHOT_PID
exec {to_psql}>&"${SNAPSHOT[1]}" {from_psql}<&"${SNAPSHOT[0]}"
ask() { # SQL → the answer's one line
  echo "$1" >&"$to_psql"
  local line
  IFS= read -r -t 600 line <&"$from_psql" || die "PostgreSQL did not answer: $1"
  echo "$line"
}
opened=$(ask "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT 'ok';")
[[ "$opened" == ok ]] || die "cannot open a transaction on the database (DATABASE_URL?): $opened"
snapshot=$(ask "SELECT pg_export_snapshot();")
{
  for table in webhook_events file_jobs avatar_files deploys avatars users; do
    exists=$(ask "SELECT to_regclass('$table') IS NOT NULL;")
    if [[ "$exists" == t ]]; then echo "$table $(ask "SELECT count(*) FROM $table;")"; fi
  done
} >"$dir/$name.counts.partial"
pg_dump -Fc --snapshot="$snapshot" --file="$dir/$name.dump.partial" "$url"
printf 'COMMIT;\n\\q\n' >&"$to_psql"
wait "$snapshot_pid" 2>/dev/null || true

mv "$dir/$name.counts.partial" "$dir/$name.counts"
mv "$dir/$name.dump.partial" "$dir/$name.dump"
(cd "$dir" && sha256sum "$name.dump" "$name.counts" >"$name.sha256")
log "backed up to $dir/$name.dump ($(du -h "$dir/$name.dump" | cut -f1)): $(tr '\n' ' ' <"$dir/$name.counts")"

# Keep the newest $keep (names sort by time).
mapfile -t old < <(find "$dir" -maxdepth 1 -name 'webhook-db-*.dump' -printf '%f\n' | sort -r | tail -n +$((keep + 1)))
for dump in "${old[@]}"; do
  base=${dump%.dump}
  rm -f "$dir/$base.dump" "$dir/$base.counts" "$dir/$base.sha256"
  log "removed the older backup $base"
done
echo "$dir/$name.dump"
