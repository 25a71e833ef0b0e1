#!/usr/bin/env bash
# Renders the nginx templates into a configuration directory.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: nginx/render.sh OUTPUT_DIR

Writes OUTPUT_DIR/nginx.conf, webhook.conf, webhook-upstream.conf, webhook-sources.conf,
webhook-proxy.conf and webhook-errors.conf from the files beside
this script. Settings (environment, defaults shown are the container's):
  NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-80}  NGINX_HTTPS_PORT=${NGINX_HTTPS_PORT:-443}  NGINX_WEBHOOK_PORT=${NGINX_WEBHOOK_PORT:-8443}
  NGINX_CONSOLE_PORT=${NGINX_CONSOLE_PORT:-9444}   the operators' console (TLS); publish it on a private address only
  NGINX_CONSOLE_LOGIN_RATE=${NGINX_CONSOLE_LOGIN_RATE:-10r/m}   console sign-ins per client address
  NGINX_CONSOLE_CONN_PER_IP=${NGINX_CONSOLE_CONN_PER_IP:-64}   the console port's requests in progress per
                 client address (an open live tail is one), counted apart from NGINX_CONN_PER_IP
  WEBHOOK_UPSTREAM_1=${WEBHOOK_UPSTREAM_1:-aisha-webhook-api-1:8000}
  WEBHOOK_UPSTREAM_2=${WEBHOOK_UPSTREAM_2:-aisha-webhook-api-2:8000}
  WEBHOOK_UPSTREAM_DNS=${WEBHOOK_UPSTREAM_DNS:-}   instead of the two: a name with every instance's
                 address (a Swarm service in dnsrr mode, webhook-api:8000), looked up again every
                 NGINX_RESOLVER_VALID (${NGINX_RESOLVER_VALID:-2s}) at NGINX_RESOLVER (${NGINX_RESOLVER:-127.0.0.11}, Docker's DNS)
  NGINX_TLS_CERT=${NGINX_TLS_CERT:-/etc/nginx/tls/fullchain.pem}
  NGINX_TLS_KEY=${NGINX_TLS_KEY:-/etc/nginx/tls/privkey.pem}
  NGINX_METRICS_ALLOW="${NGINX_METRICS_ALLOW:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}"   networks allowed /metrics and /nginx_status
  WEBHOOK_RATE_LIMIT=${WEBHOOK_RATE_LIMIT:-50r/s}  WEBHOOK_RATE_BURST=${WEBHOOK_RATE_BURST:-100}  per client address
  WEBHOOK_MAX_BODY=${WEBHOOK_MAX_BODY:-1m}
  NGINX_CONN_PER_IP=${NGINX_CONN_PER_IP:-128}   requests in progress per client address, webhook servers
  NGINX_HEALTH_RATE_LIMIT=${NGINX_HEALTH_RATE_LIMIT:-10r/s}  NGINX_HEALTH_RATE_BURST=${NGINX_HEALTH_RATE_BURST:-20}   /health per client address
  NGINX_WORKER_CONNECTIONS=${NGINX_WORKER_CONNECTIONS:-16384}   per worker process
  NGINX_WORKER_NOFILE=<2 x NGINX_WORKER_CONNECTIONS + 1024>   open files per worker
  WEBHOOK_SOURCES=${WEBHOOK_SOURCES:-}   name:scheme,... as the instances read it: each name gets a public POST location
  NGINX_LOG_DIR=${NGINX_LOG_DIR:-/var/log/nginx}  NGINX_STATE_DIR=${NGINX_STATE_DIR:-/var/cache/nginx}
  NGINX_PID_FILE=${NGINX_PID_FILE:-/run/nginx.pid}  NGINX_ACME_ROOT=${NGINX_ACME_ROOT:-/var/www/acme}
  NGINX_MIME_TYPES=${NGINX_MIME_TYPES:-/etc/nginx/mime.types}
  NGINX_CONF_DIR=<OUTPUT_DIR>   where nginx will read the rendered files from
USAGE
}
[[ $# -eq 1 && "$1" != -h && "$1" != --help ]] || { usage; [[ "${1:-}" == -h || "${1:-}" == --help ]]; exit $?; }

out=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

export NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-80}
export NGINX_HTTPS_PORT=${NGINX_HTTPS_PORT:-443}
export NGINX_WEBHOOK_PORT=${NGINX_WEBHOOK_PORT:-8443}
export NGINX_CONSOLE_PORT=${NGINX_CONSOLE_PORT:-9444}
export NGINX_CONSOLE_LOGIN_RATE=${NGINX_CONSOLE_LOGIN_RATE:-10r/m}
export NGINX_CONSOLE_CONN_PER_IP=${NGINX_CONSOLE_CONN_PER_IP:-64}
export WEBHOOK_UPSTREAM_1=${WEBHOOK_UPSTREAM_1:-aisha-webhook-api-1:8000}
export WEBHOOK_UPSTREAM_2=${WEBHOOK_UPSTREAM_2:-aisha-webhook-api-2:8000}
export NGINX_TLS_CERT=${NGINX_TLS_CERT:-/etc/nginx/tls/fullchain.pem}
export NGINX_TLS_KEY=${NGINX_TLS_KEY:-/etc/nginx/tls/privkey.pem}
export WEBHOOK_RATE_LIMIT=${WEBHOOK_RATE_LIMIT:-50r/s}
export WEBHOOK_RATE_BURST=${WEBHOOK_RATE_BURST:-100}
export WEBHOOK_MAX_BODY=${WEBHOOK_MAX_BODY:-1m}
export NGINX_CONN_PER_IP=${NGINX_CONN_PER_IP:-128}
export NGINX_HEALTH_RATE_LIMIT=${NGINX_HEALTH_RATE_LIMIT:-10r/s}
export NGINX_HEALTH_RATE_BURST=${NGINX_HEALTH_RATE_BURST:-20}
export NGINX_WORKER_CONNECTIONS=${NGINX_WORKER_CONNECTIONS:-16384}
export NGINX_WORKER_NOFILE=${NGINX_WORKER_NOFILE:-$((2 * NGINX_WORKER_CONNECTIONS + 1024))}
export NGINX_LOG_DIR=${NGINX_LOG_DIR:-/var/log/nginx}
export NGINX_STATE_DIR=${NGINX_STATE_DIR:-/var/cache/nginx}
export NGINX_PID_FILE=${NGINX_PID_FILE:-/run/nginx.pid}
export NGINX_ACME_ROOT=${NGINX_ACME_ROOT:-/var/www/acme}
export NGINX_MIME_TYPES=${NGINX_MIME_TYPES:-/etc/nginx/mime.types}
export NGINX_CONF_DIR=${NGINX_CONF_DIR:-$out}
rules=""
for network in ${NGINX_METRICS_ALLOW:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}; do
  rules+="allow $network; "
done
export NGINX_METRICS_ALLOW_RULES=$rules

# Only these names are substituted; nginx's own $variables pass through untouched.
# shellcheck disable=SC2016 # the names are for envsubst, not for this shell
names='${NGINX_HTTP_PORT} ${NGINX_HTTPS_PORT} ${NGINX_WEBHOOK_PORT} ${NGINX_CONSOLE_PORT} ${NGINX_CONSOLE_LOGIN_RATE} ${NGINX_CONSOLE_CONN_PER_IP} ${WEBHOOK_UPSTREAM_1}
${WEBHOOK_UPSTREAM_2} ${NGINX_TLS_CERT} ${NGINX_TLS_KEY} ${WEBHOOK_RATE_LIMIT} ${WEBHOOK_RATE_BURST}
${WEBHOOK_MAX_BODY} ${NGINX_LOG_DIR} ${NGINX_STATE_DIR} ${NGINX_PID_FILE} ${NGINX_ACME_ROOT}
${NGINX_MIME_TYPES} ${NGINX_CONF_DIR} ${NGINX_METRICS_ALLOW_RULES} ${NGINX_CONN_PER_IP}
${NGINX_HEALTH_RATE_LIMIT} ${NGINX_HEALTH_RATE_BURST} ${NGINX_WORKER_CONNECTIONS} ${NGINX_WORKER_NOFILE}'
# One public location for the configured sources' paths (POST only), or none.
sources=""
IFS=',' read -ra entries <<<"${WEBHOOK_SOURCES:-}"
for entry in "${entries[@]}"; do
  name=${entry%%:*}
  name=${name//[[:space:]]/}
  [[ -z "$name" ]] && continue
  if [[ ! "$name" =~ ^[a-z0-9_-]+$ ]]; then
    echo "render.sh: WEBHOOK_SOURCES: source name '$name' must be a-z, 0-9, - and _" >&2
    exit 1
  fi
  sources+="${sources:+|}$name"
done
if [[ -n "$sources" ]]; then
  cat >"$out/webhook-sources.conf" <<CONF
# Rendered from WEBHOOK_SOURCES by render.sh.
location ~ ^/api/v1/webhooks/($sources)\$ {
    if (\$request_method != POST) {
        add_header Allow "POST" always;
        add_header X-Request-ID \$webhook_request_id always;
        return 405 '{"error":"method_not_allowed","message":"method not allowed; this path accepts POST"}';
    }
    limit_req zone=webhook_per_ip burst=$WEBHOOK_RATE_BURST nodelay;
    include $NGINX_CONF_DIR/webhook-proxy.conf;
}
CONF
else
  echo "# No WEBHOOK_SOURCES: no source locations." >"$out/webhook-sources.conf"
fi

# Fixed instances keep idle connections open to each; a DNS name is looked up again so that
# tasks Swarm adds, replaces or moves are used without a restart (nginx 1.22 re-resolves only
# a proxy_pass given by a variable, and then opens a connection per request).
if [[ -n "${WEBHOOK_UPSTREAM_DNS:-}" ]]; then
  [[ "$WEBHOOK_UPSTREAM_DNS" =~ ^[A-Za-z0-9._-]+:[0-9]+$ ]] ||
    { echo "render.sh: WEBHOOK_UPSTREAM_DNS must be name:port, not '$WEBHOOK_UPSTREAM_DNS'" >&2; exit 1; }
  cat >"$out/webhook-upstream.conf" <<CONF
# Rendered by render.sh: every address of $WEBHOOK_UPSTREAM_DNS, looked up again when older than ${NGINX_RESOLVER_VALID:-2s}.
resolver ${NGINX_RESOLVER:-127.0.0.11} valid=${NGINX_RESOLVER_VALID:-2s} ipv6=off;
resolver_timeout 2s;
map "" \$webhook_upstream { default $WEBHOOK_UPSTREAM_DNS; }
CONF
else
  cat >"$out/webhook-upstream.conf" <<CONF
# Rendered by render.sh: the two instances.
upstream webhook_api {
    # Passive health: an instance that fails 3 times in 10 s is left alone for 10 s.
    server $WEBHOOK_UPSTREAM_1 max_fails=3 fail_timeout=10s;
    server $WEBHOOK_UPSTREAM_2 max_fails=3 fail_timeout=10s;
    # The same two again, never marked failed: when one instance went down seconds after the
    # other came back (still marked failed), nginx tries them rather than answer "no live
    # upstreams" with an instance up (proxy_next_upstream_tries 4 reaches them).
    server $WEBHOOK_UPSTREAM_1 backup max_fails=0;
    server $WEBHOOK_UPSTREAM_2 backup max_fails=0;
    keepalive 64;
    keepalive_requests 10000;
    # Below the instances' idle keep-alive close (HTTP_READ_TIMEOUT_SECS, 30 s): nginx always
    # drops an idle connection first, so it never sends a request on one the instance is
    # closing at that very moment.
    keepalive_timeout 20s;
}
map "" \$webhook_upstream { default webhook_api; }
CONF
fi
envsubst "$names" <"$here/nginx.conf.template" >"$out/nginx.conf"
envsubst "$names" <"$here/webhook.conf.template" >"$out/webhook.conf"
cp "$here/webhook-proxy.conf" "$here/webhook-errors.conf" "$out/"
mkdir -p "$NGINX_STATE_DIR" "$NGINX_LOG_DIR" 2>/dev/null || true
