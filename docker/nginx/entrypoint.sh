#!/usr/bin/env bash
# Renders /etc/nginx/webhook/*.template with this container's environment, then runs nginx in
# the foreground. Settings: see nginx/render.sh --help.
set -euo pipefail
/etc/nginx/webhook/render.sh /etc/nginx/rendered
nginx -t -q -c /etc/nginx/rendered/nginx.conf
exec nginx -c /etc/nginx/rendered/nginx.conf -g 'daemon off;'
