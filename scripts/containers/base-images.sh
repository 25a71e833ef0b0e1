#!/usr/bin/env bash
# Makes the Debian bookworm base images locally (debootstrap, then docker import), since no
# image can be pulled here. Cached: an image whose package list has not changed is reused,
# and the root filesystem tarball is kept to re-import it without debootstrap.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/containers/base-images.sh [--help]

Makes (or reuses) two images and prints their names as KEY=IMAGE lines:
  RUNTIME_IMAGE   minbase + ca-certificates, curl, nginx-light, gettext-base
                  (the API's runtime and nginx's base)
  DEPS_IMAGE      the runtime + postgresql, redis-server (the test's database and cache)
Settings (environment, defaults shown):
  IMAGE_CACHE_DIR=${IMAGE_CACHE_DIR:-/var/cache/webhook-images}   root filesystem tarballs
  DEBIAN_MIRROR=<the URI in /etc/apt/sources.list.d/debian.sources, else deb.debian.org>
Needs root (debootstrap) and a Docker engine.
USAGE
}
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }

cache=${IMAGE_CACHE_DIR:-/var/cache/webhook-images}
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
log() { echo "base-images: $*" >&2; }

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mkdir -p "$cache"

make_image() { # NAME PACKAGES(comma-separated)
  local name=$1 packages=$2 tag image tarball rootfs
  tag=$(printf 'bookworm %s' "$packages" | sha256sum | cut -c1-12)
  image="webhook-base/$name:$tag"
  tarball="$cache/$name-$tag.tar"
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image cached"
  else
    if [[ ! -s "$tarball" ]]; then
      rootfs=$(mktemp -d)
      log "debootstrap $name ($packages)"
      debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$cache/$name.log" 2>&1 ||
        { log "debootstrap failed; see $cache/$name.log"; rm -rf "$rootfs"; exit 1; }
      # Smaller image, nothing stale: no apt lists, docs, caches.
      chroot "$rootfs" apt-get clean
      rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/cache/debconf/*-old
      tar -C "$rootfs" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
      rm -rf "$rootfs"
    fi
    log "importing $image"
    docker import --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
  fi
  echo "$image"
}

runtime_packages=ca-certificates,curl,nginx-light,gettext-base
echo "RUNTIME_IMAGE=$(make_image runtime "$runtime_packages")"
echo "DEPS_IMAGE=$(make_image deps "$runtime_packages,postgresql-15,redis-server")"
