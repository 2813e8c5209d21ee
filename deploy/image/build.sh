#!/usr/bin/env bash
# Builds the repository's Dockerfile with buildah, without a Docker daemon or a container
# registry, leaving localhost/agent-registry:TAG (default `dev`) in local container storage.
#
#   deploy/image/build.sh [TAG]
#
# No registry is reachable, so neither base image can be pulled:
# - runtime base: a minimal Debian bookworm made with debootstrap (with ca-certificates and the
#   point release's security and stable updates), slimmed like debian:bookworm-slim, imported as
#   $BASE_IMAGE (localhost/debian:bookworm-slim) and passed as the RUNTIME_IMAGE build argument.
#   The rootfs tarball and the image are cached: later runs reuse them, for BASE_MAX_AGE_DAYS
#   (7) days, then make them again so security updates are not frozen in a long-lived cache.
# - build stage: replaced by the binary built here on the host (`cargo build --release --locked
#   --bin agent-registry`, or $AGENT_REGISTRY_BIN if set), given as the `binary` build context;
#   the Dockerfile's compile stage is then skipped (see the Dockerfile's header).
# The Dockerfile itself is the one `docker build .` uses; only its inputs differ.
#
# Needs root, buildah and debootstrap (Debian: apt-get install buildah debootstrap). Storage driver
# vfs and chroot isolation, so it runs without overlayfs, user namespaces or a daemon.
# Environment:
#   AGENT_REGISTRY_BIN          a release binary to use instead of running cargo
#   BASE_IMAGE                  local runtime base image name (localhost/debian:bookworm-slim)
#   AGENT_REGISTRY_IMAGE_CACHE  where the rootfs tarball is kept (~/.cache/agent-registry-image)
#   DEBIAN_MIRROR               (http://deb.debian.org/debian); DEBIAN_SECURITY_MIRROR likewise
#   REBUILD_BASE=1              make the base image again even if it is cached
#   BASE_MAX_AGE_DAYS           age after which the cached base is made again (7)
set -euo pipefail

tag=${1:-dev}
root=$(cd "$(dirname "$0")/../.." && pwd)
image=localhost/agent-registry:$tag
base=${BASE_IMAGE:-localhost/debian:bookworm-slim}
cache=${AGENT_REGISTRY_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-registry-image}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Bump when the way the base is made changes, so a cached base made the old way is not reused.
base_recipe=1
tarball=$cache/bookworm-minbase-r$base_recipe-$(dpkg --print-architecture).tar

bah() { buildah --storage-driver vfs "$@"; }
log() { echo "build.sh: $*" >&2; }
now() { date +%s; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, buildah with chroot isolation)"; exit 1; }
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool missing: apt-get install buildah debootstrap"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-registry-image.XXXXXX")
base_ctr=
cleanup() {
  # Best effort, every step: one that fails must not stop the rest (errexit is off here).
  set +e +o pipefail
  [ -n "$base_ctr" ] && bah rm "$base_ctr" >/dev/null 2>&1
  # debootstrap and the upgrade mount /proc (and maybe /sys) inside the rootfs: unmount before
  # removing, and never cross into another file system.
  if [ -d "$work/rootfs" ]; then
    findmnt -rn -o TARGET | grep "^$work/rootfs/" | sort -r | xargs -r -n1 umount -l 2>/dev/null
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM

started=$(now)

# 1. The binary.
if [ -n "${AGENT_REGISTRY_BIN:-}" ]; then
  bin=$AGENT_REGISTRY_BIN
  log "using the binary $bin"
else
  log "cargo build --release --locked --bin agent-registry"
  (cd "$root" && cargo build --release --locked --bin agent-registry)
  target_dir=${CARGO_TARGET_DIR:-target}
  case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
  bin=$target_dir/release/agent-registry
fi
[ -x "$bin" ] || { log "$bin is not an executable file"; exit 1; }
mkdir "$work/binary"
cp "$bin" "$work/binary/agent-registry"
binary_done=$(now)

# 2. The runtime base image.
make_rootfs() {
  local r=$work/rootfs
  log "debootstrap --variant=minbase bookworm from $mirror (cached afterwards in $cache)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$r" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; return 1; }

  # Never install documentation, man pages or translations later (what debian:*-slim does), and
  # never keep downloaded packages.
  cat >"$r/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::Install-Recommends "false";' >"$r/etc/apt/apt.conf.d/docker-no-recommends"
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The point release's security and stable updates, as the official image has them.
  log "apt-get upgrade in the rootfs (security and stable updates)"
  mount -t proc proc "$r/proc" || return 1
  chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq' >"$work/upgrade.log" 2>&1 \
    || { tail -n 30 "$work/upgrade.log" >&2; umount "$r/proc"; return 1; }
  umount "$r/proc"

  # What the container runtime provides, or what only a booted system needs.
  rm -rf "${r:?}"/dev/* "${r:?}"/run/* "${r:?}"/tmp/* "${r:?}"/var/tmp/*
  rm -rf "${r:?}"/var/lib/apt/lists/* "${r:?}"/var/cache/apt/* "${r:?}"/var/cache/debconf/*-old \
    "${r:?}"/var/lib/dpkg/*-old "${r:?}"/var/log/* "${r:?}"/root/.bash_history
  find "${r:?}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "${r:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${r:?}"/usr/share/man/* "${r:?}"/usr/share/info/* "${r:?}"/usr/share/groff/* \
    "${r:?}"/usr/share/lintian/* "${r:?}"/usr/share/linda/*
  find "${r:?}/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : >"$r/etc/resolv.conf"
  rm -f "$r/etc/hostname"

  mkdir -p "$cache"
  # Called from an `if`, so errexit is off in here: a failed tar must not become the cache.
  tar --numeric-owner --xattrs -C "$r" -cf "$tarball.partial" . \
    || { rm -f "$tarball.partial"; return 1; }
  mv "$tarball.partial" "$tarball"
  rm -rf --one-file-system "${r:?}"
}

max_age=$((${BASE_MAX_AGE_DAYS:-7} * 86400))
label() {
  bah inspect --type image --format "{{index .OCIv1.Config.Labels \"agent-registry.$1\"}}" "$base" 2>/dev/null
}
base_is_current() {
  local built
  built=$(label base-built) || return 1
  [ "$(label base-recipe)" = "$base_recipe" ] && [ -n "$built" ] && [ $(($(now) - built)) -lt "$max_age" ]
}

if [ "${REBUILD_BASE:-0}" = 1 ] \
   || { [ -f "$tarball" ] && [ $(($(now) - $(stat -c %Y "$tarball"))) -ge "$max_age" ]; }; then
  rm -f "$tarball"
  bah rmi "$base" >/dev/null 2>&1 || true
fi
if base_is_current; then
  log "reusing the base image $base"
else
  if [ ! -s "$tarball" ]; then
    make_rootfs || { echo "build.sh: making the base rootfs failed" >&2; exit 1; }
  fi
  log "importing $tarball as $base"
  base_ctr=$(bah from --pull=never scratch)
  bah add "$base_ctr" "$tarball" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --os linux --arch "$(dpkg --print-architecture)" \
    --label agent-registry.base-recipe="$base_recipe" \
    --label agent-registry.base-built="$(stat -c %Y "$tarball")" \
    --label org.opencontainers.image.description="Debian bookworm minbase (debootstrap) + ca-certificates" \
    "$base_ctr"
  bah commit --rm --quiet "$base_ctr" "$base" >/dev/null
  base_ctr=
fi
base_done=$(now)

# 3. The image, from the repository's Dockerfile.
previous=$(bah inspect --type image --format '{{.FromImageID}}' "$image" 2>/dev/null || true)
log "buildah build -t $image (RUNTIME_IMAGE=$base, binary from the host)"
bah build --isolation chroot --pull=never \
  --build-arg RUNTIME_IMAGE="$base" \
  --build-context binary="$work/binary" \
  -f "$root/Dockerfile" -t "$image" "$root"
done_at=$(now)
# The image this tag named before, now untagged: removed (by id) so rebuilds do not pile up
# full copies in vfs storage. Kept if something else still uses it.
if [ -n "$previous" ] && [ "$previous" != "$(bah inspect --type image --format '{{.FromImageID}}' "$image")" ]; then
  bah rmi "$previous" >/dev/null 2>&1 || true
fi

log "built $image in $((done_at - started)) s (binary $((binary_done - started)) s," \
  "base $((base_done - binary_done)) s, image $((done_at - base_done)) s)"
bah images "$image"
