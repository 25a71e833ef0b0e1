#!/usr/bin/env bash
# Renders /etc/nginx/webhook/*.template with this container's environment, then runs nginx in
# the foreground. Settings: see nginx/render.sh --help. With NGINX_RENDERED_DIR, the
# configuration there is used as it is (rendered before, e.g. Docker configs in a Swarm stack).
set -euo pipefail
conf_dir=${NGINX_RENDERED_DIR:-/etc/nginx/rendered}
# Without its certificate nginx would only say "cannot load certificate" and restart forever.
for file in "${NGINX_TLS_CERT:-/etc/nginx/tls/fullchain.pem}" "${NGINX_TLS_KEY:-/etc/nginx/tls/privkey.pem}"; do
  if [[ ! -r "$file" ]]; then
    echo "nginx-webhook: $file is missing or unreadable: put fullchain.pem and privkey.pem in TLS_CERT_DIR on the host (prod.env; README, Production)" >&2
    exit 78
  fi
done
[[ -n "${NGINX_RENDERED_DIR:-}" ]] || /etc/nginx/webhook/render.sh "$conf_dir"
nginx -t -q -c "$conf_dir/nginx.conf"
exec nginx -c "$conf_dir/nginx.conf" -g 'daemon off;'
