#!/usr/bin/env bash
# Renders /etc/nginx/webhook/*.template with this container's environment, then runs nginx in
# the foreground. Settings: see nginx/render.sh --help.
set -euo pipefail
# Without its certificate nginx would only say "cannot load certificate" and restart forever.
for file in "${NGINX_TLS_CERT:-/etc/nginx/tls/fullchain.pem}" "${NGINX_TLS_KEY:-/etc/nginx/tls/privkey.pem}"; do
  if [[ ! -r "$file" ]]; then
    echo "nginx-webhook: $file is missing or unreadable: put fullchain.pem and privkey.pem in TLS_CERT_DIR on the host (prod.env; README, Production)" >&2
    exit 78
  fi
done
/etc/nginx/webhook/render.sh /etc/nginx/rendered
nginx -t -q -c /etc/nginx/rendered/nginx.conf
exec nginx -c /etc/nginx/rendered/nginx.conf -g 'daemon off;'
