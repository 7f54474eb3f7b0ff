#!/usr/bin/env bash
# Builds (or reuses from the cache) the busybox initramfs used by the cgroup v2 VM
# harness (test/vm/harness.ts). See test/vm/README.md.
#
# Output (stdout, one KEY=VALUE per line; everything else goes to stderr):
#   KVER=<kernel version>  KERNEL=<path to vmlinuz>  INITRD=<path to cpio.gz>
#
# Environment:
#   DENV_CACHE_DIR   cache root (default $HOME/.cache/disposable-env); files go to
#                    $DENV_CACHE_DIR/vm/<kernel version>/
#   DENV_VM_KERNEL   path of the vmlinuz to use (default: newest /boot/vmlinuz-*-amd64)
#   DENV_VM_REBUILD  1 = rebuild even if a cached image exists
set -euo pipefail

log() { echo "build-initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --- kernel ------------------------------------------------------------------
kernel="${DENV_VM_KERNEL:-}"
if [[ -z "$kernel" ]]; then
  kernel="$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)"
  [[ -n "$kernel" ]] || die "no /boot/vmlinuz-*-amd64 found (apt-get install linux-image-amd64)"
fi
[[ -r "$kernel" ]] || die "kernel $kernel is not readable"
kver="$(basename "$kernel")"
kver="${kver#vmlinuz-}"
moddir="/lib/modules/$kver"
[[ -d "$moddir" ]] || die "$moddir missing (modules of the VM kernel must be installed on the host)"

# --- busybox -----------------------------------------------------------------
busybox=""
for c in /bin/busybox /usr/bin/busybox; do
  # a static binary makes ldd say "not a dynamic executable" (ldd is in libc-bin)
  if [[ -x "$c" ]] && ! ldd "$c" >/dev/null 2>&1; then busybox="$c"; break; fi
done
[[ -n "$busybox" ]] || die "no statically linked busybox (apt-get install busybox-static)"
command -v modinfo >/dev/null || die "modinfo missing (apt-get install kmod)"

# --- cache key -----------------------------------------------------------------
# The image depends on this script (which embeds /init), the kernel and busybox.
key="$( { cat "${BASH_SOURCE[0]}"; echo "$kver"; sha256sum "$busybox" "$kernel"; } | sha256sum | cut -c1-16)"
cache_root="${DENV_CACHE_DIR:-${HOME:-/root}/.cache/disposable-env}"
outdir="$cache_root/vm/$kver"
initrd="$outdir/initramfs-$key.cpio.gz"

emit() {
  echo "KVER=$kver"
  echo "KERNEL=$kernel"
  echo "INITRD=$initrd"
}

if [[ -s "$initrd" && "${DENV_VM_REBUILD:-0}" != 1 ]]; then
  log "cached: $initrd"
  emit
  exit 0
fi

mkdir -p "$outdir"
work="$(mktemp -d "$outdir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,proc,sys,dev,newroot,modules}

cp "$busybox" "$root/bin/busybox"

# --- modules (dependency order, builtin ones skipped) ---------------------------
wanted=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p)
declare -A seen=()
order=()
is_builtin() { grep -qE "/$1\.ko\$" "$moddir/modules.builtin" 2>/dev/null; }
add_module() {
  local name="$1" dep deps file
  name="${name//-/_}"
  [[ -n "${seen[$name]:-}" ]] && return 0
  seen[$name]=1
  file="$(modinfo -k "$kver" -F filename "$name" 2>/dev/null || true)"
  if [[ -z "$file" || "$file" == "(builtin)" ]] || is_builtin "$name"; then
    log "module $name: builtin"
    return 0
  fi
  deps="$(modinfo -k "$kver" -F depends "$name" 2>/dev/null || true)"
  for dep in ${deps//,/ }; do add_module "$dep"; done
  case "$file" in
    *.ko) cp "$file" "$root/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$file" >"$root/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$file" >"$root/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$file" >"$root/modules/$name.ko" ;;
    *) die "module $name: unknown file type $file" ;;
  esac
  order+=("$name")
  log "module $name: ${file#"$moddir"/}"
}
for m in "${wanted[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" >"$root/modules/order"

# --- /init (stage 1, runs from the initramfs) -----------------------------------
cat >"$root/init" <<'STAGE1'
#!/bin/busybox sh
# disposable-env VM stage 1: load virtio/9p, mount host root + out share, switch_root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

say() { echo "denv-vm: $*"; }
fail() {
  say "FATAL: $*"
  [ -d /newroot/run/denv/out ] && echo "stage1: $*" >/newroot/run/denv/out/stage1-error 2>/dev/null
  sync
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger
}

say "stage1 up=$(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || fail "insmod $m"
done

opts9p="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$opts9p,ro,cache=loose" hostroot /newroot || fail "mount hostroot"
mount -t tmpfs -o mode=0755,size=256m tmpfs /newroot/run || fail "mount /run"
mkdir -p /newroot/run/denv/out
mount -t 9p -o "$opts9p,cache=none" out /newroot/run/denv/out || fail "mount out"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /newroot/var/lib || fail "mount /var/lib"
mount -t tmpfs -o mode=0700 tmpfs /newroot/root || fail "mount /root"
# A checkout under one of the tmpfs dirs above is hidden by them: mount the
# separately exported repo back at its own path.
if [ -f /newroot/run/denv/out/.repo-path ]; then
  rp=$(cat /newroot/run/denv/out/.repo-path)
  case "$rp" in
    /tmp/*|/run/*|/var/lib/*|/root/*)
      mkdir -p "/newroot$rp" && mount -t 9p -o "$opts9p,ro,cache=loose" repo "/newroot$rp" || fail "mount repo at $rp" ;;
  esac
fi
mount --move /proc /newroot/proc || fail "move /proc"
mount --move /sys /newroot/sys || fail "move /sys"
mount --move /dev /newroot/dev || fail "move /dev"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /newroot/sys/fs/cgroup \
  || mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || fail "mount cgroup2"
ctl=""
for c in $(cat /newroot/sys/fs/cgroup/cgroup.controllers); do ctl="$ctl +$c"; done
echo "$ctl" >/newroot/sys/fs/cgroup/cgroup.subtree_control || fail "enable controllers:$ctl"

cp /bin/busybox /newroot/run/denv/busybox
cp /stage2 /newroot/run/denv/stage2
exec switch_root /newroot /run/denv/busybox sh /run/denv/stage2
fail "switch_root"
STAGE1
chmod 0755 "$root/init"

# --- stage 2 (PID 1 in the host root, after switch_root) -------------------------
cat >"$root/stage2" <<'STAGE2'
# disposable-env VM stage 2: PID 1 inside the (read-only) host root.
BB=/run/denv/busybox
OUT=/run/denv/out
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 DENV_VM=1 DENV_VM_OUT=$OUT
$BB hostname denv-vm
$BB ip link set lo up 2>/dev/null
$BB cp $OUT/cmd.sh /run/denv/cmd.sh
echo "denv-vm: running command up=$($BB cut -d' ' -f1 /proc/uptime)"
cd /
/bin/sh /run/denv/cmd.sh </dev/null >$OUT/stdout 2>$OUT/stderr
rc=$?
echo "$rc" >$OUT/exit.tmp && $BB mv $OUT/exit.tmp $OUT/exit
echo "denv-vm: command exited rc=$rc up=$($BB cut -d' ' -f1 /proc/uptime)"
$BB sync
$BB poweroff -f
$BB sleep 5
echo o >/proc/sysrq-trigger
STAGE2

# --- pack --------------------------------------------------------------------------
tmp_img="$work/initramfs.cpio.gz"
(cd "$root" && find . -print | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -6 >"$tmp_img"
mv -f "$tmp_img" "$initrd"
# drop images of older script versions for this kernel
for old in "$outdir"/initramfs-*.cpio.gz; do
  [[ "$old" == "$initrd" ]] || rm -f "$old"
done
log "built: $initrd ($(du -h "$initrd" | cut -f1))"
emit
