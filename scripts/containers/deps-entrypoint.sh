#!/usr/bin/env bash
# Entry point of the test's dependencies container (made from the locally built deps base):
# PostgreSQL, Redis, the S3 server (s3s-fs) and a static file server playing FAL's CDN.
set -euo pipefail

cluster_conf=/etc/postgresql/15/main
pg_lsclusters -h | grep -q '^15 main' || pg_createcluster 15 main >/dev/null
echo "listen_addresses = '*'" >"$cluster_conf/conf.d/listen.conf"
echo "host all all 0.0.0.0/0 scram-sha-256" >>"$cluster_conf/pg_hba.conf"
pg_ctlcluster 15 main start
runuser -u postgres -- psql -q -c "CREATE ROLE webhook LOGIN PASSWORD 'webhook'" >/dev/null
runuser -u postgres -- psql -q -c "CREATE DATABASE webhook OWNER webhook" >/dev/null

redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no --daemonize yes >/dev/null

mkdir -p /srv/s3
s3s-fs --host 0.0.0.0 --port 9000 --access-key containers-access --secret-key containers-secret /srv/s3 \
  >/var/log/s3s-fs.log 2>&1 &

cat >/tmp/cdn.conf <<'CONF'
daemon on;
pid /tmp/cdn.pid;
error_log /tmp/cdn-error.log;
events {}
http {
    access_log off;
    server { listen 8080; root /srv/cdn; }
}
CONF
nginx -c /tmp/cdn.conf

touch /tmp/deps-ready
exec sleep infinity
