#!/usr/bin/env bash
# The webhook port's TLS certificate: renewal with certbot on the ACME folder nginx serves,
# installation into TLS_CERT_DIR, a graceful nginx reload; and an expiry check for cron.
set -euo pipefail
# shellcheck source=scripts/deploy/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/deploy/renew-certificate.sh [--check | --install-only] [--dry-run] DOMAIN

  (default)       certbot certonly --webroot on ACME_DIR (nginx serves /.well-known/acme-challenge/
                  on port 80) for DOMAIN, then installs and reloads as --install-only does
  --install-only  copy fullchain.pem and privkey.pem from CERTBOT_LIVE_DIR into TLS_CERT_DIR,
                  check that they are a pair, reload nginx (docker kill -s HUP: no dropped request)
  --check         print the certificate in TLS_CERT_DIR and its days left; exit 1 when fewer
                  than WARN_DAYS are left (for cron, or a monitoring check)
Settings (environment, else prod.env, else the default shown):
  TLS_CERT_DIR=$(env_setting TLS_CERT_DIR ./certs)   ACME_DIR=$(env_setting ACME_DIR ./acme)
  CERTBOT_LIVE_DIR=/etc/letsencrypt/live/DOMAIN   WARN_DAYS=${WARN_DAYS:-21}
A daily cron line: 0 4 * * * cd /srv/aisha-webhook && scripts/deploy/renew-certificate.sh DOMAIN
(certbot renews only within 30 days of expiry, so running it daily is cheap).
USAGE
}

mode=renew domain=""
for arg in "$@"; do
  case "$arg" in
    --check) mode=check ;;
    --install-only) mode=install ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; die "unknown argument $arg" ;;
    *) domain=$arg ;;
  esac
done
cd "$REPO_ROOT"
cert_dir=$(env_setting TLS_CERT_DIR ./certs)
acme_dir=$(env_setting ACME_DIR ./acme)
warn_days=${WARN_DAYS:-21}

if [[ $mode == check ]]; then
  cert="$cert_dir/fullchain.pem"
  [[ -r "$cert" ]] || die "$cert is missing or unreadable"
  end=$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)
  days=$((($(date -d "$end" +%s) - $(date +%s)) / 86400))
  echo "$(openssl x509 -in "$cert" -noout -subject), expires $end: $days days left"
  ((days >= warn_days)) || die "the certificate expires in $days days (WARN_DAYS=$warn_days)"
  exit 0
fi

[[ -n "$domain" ]] || { usage; die "DOMAIN is required"; }
live=${CERTBOT_LIVE_DIR:-/etc/letsencrypt/live/$domain}
if [[ $mode == renew ]]; then
  command -v certbot >/dev/null || die "certbot is not installed (apt-get install certbot)"
  run certbot certonly --webroot -w "$acme_dir" -d "$domain" --non-interactive --agree-tos \
    --keep-until-expiring
fi
for file in fullchain.pem privkey.pem; do
  [[ -r "$live/$file" || "$DRY_RUN" == 1 ]] || die "$live/$file is missing"
done
if [[ "$DRY_RUN" != 1 ]]; then
  # A certificate and a key that do not belong together would stop nginx at its next start.
  [[ $(openssl x509 -in "$live/fullchain.pem" -noout -pubkey) == $(openssl pkey -in "$live/privkey.pem" -pubout) ]] ||
    die "$live: fullchain.pem and privkey.pem are not a pair"
fi
# The key keeps the mode the operator gave it (nginx's user must be able to read it).
run install -m 644 "$live/fullchain.pem" "$cert_dir/fullchain.pem"
run install -m "$(stat -c %a "$cert_dir/privkey.pem" 2>/dev/null || echo 640)" "$live/privkey.pem" "$cert_dir/privkey.pem"
run docker kill -s HUP "$NGINX_SERVICE" >/dev/null
log "installed $live into $cert_dir; nginx reloaded"
