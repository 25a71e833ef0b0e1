#!/usr/bin/env bash
# Checks the monitoring files. The Prometheus alert rules with promtool: syntax (check rules) and behaviour (test
# rules: each alert fires on the series that should raise it, after its `for`). promtool is
# taken from Debian's prometheus package without installing it (no server is started).
set -euo pipefail
cd "$(dirname "$0")/../.."

promtool=$(command -v promtool || true)
if [[ -z "$promtool" ]]; then
  tools="${CARGO_TARGET_DIR:-$PWD/target}/tools/prometheus"
  promtool="$tools/usr/bin/promtool"
  if [[ ! -x "$promtool" ]]; then
    echo "check-monitoring: fetching promtool (Debian's prometheus package, unpacked only)" >&2
    download=$(mktemp -d)
    (cd "$download" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
    mkdir -p "$tools"
    dpkg-deb -x "$download"/prometheus_*.deb "$tools"
    rm -rf "$download"
  fi
fi

"$promtool" check rules monitoring/prometheus/alerts.yml
# The scrape configuration too (its token file is mounted at run time: a stand-in here).
config_check=$(mktemp -d)
sed "s|/etc/prometheus/secrets/operator-token|$config_check/token|" monitoring/prometheus/prometheus.yml \
  >"$config_check/prometheus.yml"
cp monitoring/prometheus/alerts.yml "$config_check/"
echo stand-in-token >"$config_check/token"
"$promtool" check config "$config_check/prometheus.yml"
rm -rf "$config_check"
(cd monitoring/prometheus && "$promtool" test rules alerts.test.yml)

# The optional monitoring stack's compose file is valid (its images are not pulled here).
if command -v docker-compose >/dev/null 2>&1; then
  GRAFANA_ADMIN_PASSWORD=check PROMETHEUS_TOKEN_FILE=/dev/null \
    docker-compose -f docker-compose.monitoring.yml config -q
  echo "docker-compose.monitoring.yml: valid"
fi
