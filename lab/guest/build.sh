#!/bin/bash
# Build the virtpool test guest: OUTDIR/vmlinux (uncompressed kernel, PVH
# entry) and OUTDIR/initramfs.img (busybox-static + vpguest). Run as root.
#
#   lab/guest/build.sh OUTDIR
#
# Environment:
#   VIRTPOOL_GUEST_KERNEL=custom|debian  (default custom)
#     custom: tinyconfig + kernel.config built from Debian's linux-source-6.1
#             (~5-10 min once, cached in $VIRTPOOL_CACHE/kernel-<hash>/)
#     debian: Debian's cloud kernel (linux-image-cloud-amd64), decompressed,
#             virtio modules put into the initramfs (slower boot, no build)
#   VIRTPOOL_CACHE (default /var/cache/virtpool): .deb files and kernels.
#
# Only network access: apt-get install / apt-get download from Debian mirrors.
# Idempotent: returns at once when OUTDIR is up to date with the inputs.
set -euo pipefail

OUT=${1:?usage: build.sh OUTDIR}
KSEL=${VIRTPOOL_GUEST_KERNEL:-custom}
CACHE=${VIRTPOOL_CACHE:-/var/cache/virtpool}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RECIPE=3 # bump to invalidate cached kernels built by an older recipe
export LC_ALL=C

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

case $KSEL in custom | debian) ;; *) die "VIRTPOOL_GUEST_KERNEL must be custom or debian" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, mknod)"

# need PKG... : install the Debian packages that are missing.
APT_UPDATED=
need() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	if [ -z "$APT_UPDATED" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# deb PKG: path of PKG's .deb in $CACHE/deb, downloading it if needed. Uses the
# candidate version; falls back to any cached version when apt can't tell.
deb() {
	local pkg=$1 ver f
	mkdir -p "$CACHE/deb"
	ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
		if [ -z "$APT_UPDATED" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
		ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
	fi
	if [ -n "$ver" ] && [ "$ver" != "(none)" ]; then
		f=$(ls "$CACHE/deb/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
		if [ -z "$f" ]; then
			log "downloading $pkg $ver"
			(cd "$CACHE/deb" && apt-get download -q "$pkg=$ver" >&2 2>/dev/null) ||
				(cd "$CACHE/deb" && apt-get download -q "$pkg=$ver" >&2)
			f=$(ls "$CACHE/deb/${pkg}_${ver//:/%3a}_"*.deb | head -n1)
		fi
	else
		f=$(ls -t "$CACHE/deb/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
	fi
	[ -n "$f" ] && [ -f "$f" ] || die "cannot get $pkg"
	echo "$f"
}

# Concrete package behind a Debian meta-package (first "linux-image-*" dep).
resolve_meta() {
	apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

need busybox-static gcc libc6-dev cpio
case $KSEL in
custom) need make gcc flex bison bc libelf-dev xz-utils ;;
debian) need lz4 xz-utils ;;
esac

# ---------------------------------------------------------------- kernel
# Sets KDIR to a cache directory holding vmlinux (+ modules/ for debian).
kernel_custom() {
	local srcdeb key tmp src
	srcdeb=$(deb linux-source-6.1)
	key=$( (echo "recipe $RECIPE"; basename "$srcdeb"; cat "$HERE/kernel.config") | sha256sum | cut -c1-16)
	KDIR=$CACHE/kernel-$key
	[ -f "$KDIR/vmlinux" ] && return 0
	log "building custom kernel $KDIR (from $(basename "$srcdeb"), make -j$(nproc))"
	local t0=$SECONDS
	tmp=$(mktemp -d "$CACHE/kbuild.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	dpkg-deb --fsys-tarfile "$srcdeb" | tar -x -C "$tmp" --wildcards '*/linux-source-6.1.tar.xz'
	tar -xJf "$tmp"/usr/src/linux-source-6.1.tar.xz -C "$tmp"
	src=$tmp/linux-source-6.1
	make -C "$src" -s tinyconfig >"$tmp/config.log" 2>&1
	(cd "$src" && scripts/kconfig/merge_config.sh -m .config "$HERE/kernel.config" >>"$tmp/config.log" 2>&1)
	make -C "$src" -s olddefconfig >>"$tmp/config.log" 2>&1
	# every option of the fragment must have survived dependency resolution
	local line k bad=0
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*) grep -qx "$line" "$src/.config" || { log "$line not applied"; bad=1; } ;;
		"# CONFIG_"*" is not set")
			k=${line#\# } k=${k%% *}
			! grep -q "^$k=" "$src/.config" || { log "$k still set"; bad=1; } ;;
		esac
	done <"$HERE/kernel.config"
	[ $bad = 0 ] || die "kernel.config does not apply cleanly"
	make -C "$src" -s -j"$(nproc)" vmlinux >&2
	mkdir -p "$tmp/out"
	cp "$src/vmlinux" "$src/.config" "$tmp/out/"
	rm -rf "$KDIR" && mv "$tmp/out" "$KDIR"
	rm -rf "$tmp"
	trap - EXIT
	log "custom kernel built in $((SECONDS - t0)) s"
}

# extract_vmlinux BZIMAGE OUT: find the compressed payload inside a bzImage
# and decompress it (the approach of the kernel's scripts/extract-vmlinux).
extract_vmlinux() {
	local img=$1 out=$2 magic cmd off
	for pair in '\x02\x21\x4c\x18:lz4 -dc' '\xfd\x37\x7a\x58\x5a\x00:xz -dc' \
		'\x28\xb5\x2f\xfd:zstd -dc' '\x1f\x8b\x08:gzip -dc'; do
		magic=${pair%%:*} cmd=${pair#*:}
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
			tail -c +$((off + 1)) "$img" | $cmd >"$out" 2>/dev/null || true
			if [ "$(head -c4 "$out" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				return 0
			fi
		done
	done
	die "cannot extract vmlinux from $img"
}

kernel_debian() {
	local pkg imgdeb tmp m
	pkg=$(resolve_meta linux-image-cloud-amd64)
	if [ -z "$pkg" ]; then # offline: newest cached cloud kernel
		imgdeb=$(ls -t "$CACHE"/deb/linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -n1 || true)
		[ -n "$imgdeb" ] || die "cannot resolve linux-image-cloud-amd64"
		pkg=$(basename "$imgdeb" | cut -d_ -f1)
	fi
	imgdeb=$(deb "$pkg")
	KDIR=$CACHE/kernel-debian-$(basename "$imgdeb" .deb)-r$RECIPE
	[ -f "$KDIR/vmlinux" ] && return 0
	log "unpacking $(basename "$imgdeb")"
	tmp=$(mktemp -d "$CACHE/kdeb.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	dpkg-deb -x "$imgdeb" "$tmp/x"
	mkdir -p "$tmp/out/modules"
	extract_vmlinux "$(ls "$tmp"/x/boot/vmlinuz-*)" "$tmp/out/vmlinux"
	# virtio + virtio-net modules in dependency order (missing = built in)
	touch "$tmp/out/modules/order"
	for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
		failover net_failover virtio_net; do
		f=$(find "$tmp/x/lib/modules" -name "$m.ko" | head -n1)
		[ -n "$f" ] || continue
		for d in $(grep -ao 'depends=[a-z0-9_,-]*' "$f" | cut -d= -f2 | tr , ' '); do
			grep -qx "$d" "$tmp/out/modules/order" || die "$m.ko needs $d first"
		done
		cp "$f" "$tmp/out/modules/" && echo "$m" >>"$tmp/out/modules/order"
	done
	rm -rf "$KDIR" && mv "$tmp/out" "$KDIR"
	rm -rf "$tmp"
	trap - EXIT
}

mkdir -p "$CACHE"
# One build at a time: concurrent labs (tests, demo) share the cache.
exec 9>"$CACHE/.build.lock"
flock 9
# Cheap up-to-date check first: the stamp records every input.
stamp_inputs() {
	echo "recipe $RECIPE kernel $KSEL"
	sha256sum "$HERE/build.sh" "$HERE/vpguest.c" "$HERE/kernel.config"
	dpkg-query -W busybox-static libc6-dev gcc
}
STAMP=$(stamp_inputs | sha256sum | cut -c1-32)
if [ -f "$OUT/vmlinux" ] && [ -f "$OUT/initramfs.img" ] && [ -f "$OUT/.stamp" ] &&
	[ "$(head -n1 "$OUT/.stamp")" = "$STAMP" ] &&
	[ -f "$(sed -n 2p "$OUT/.stamp")/vmlinux" ]; then
	exit 0 # up to date (stamp also names the cached kernel it came from)
fi

"kernel_$KSEL"

# ---------------------------------------------------------------- initramfs
mkdir -p "$OUT"
ROOT=$(mktemp -d "$OUT/.root.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,etc,lib/modules}
cp /bin/busybox "$ROOT/bin/busybox"
# one symlink per applet, made now rather than at boot (slow under TCG)
for a in $("$ROOT/bin/busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"
done
gcc -static -O2 -s -pthread -o "$ROOT/bin/vpguest" "$HERE/vpguest.c"
ln -s bin/vpguest "$ROOT/init" # vpguest is PID 1: setup in C is much faster than sh under TCG
echo 'root:x:0:0:root:/:/bin/sh' >"$ROOT/etc/passwd"
if [ -d "$KDIR/modules" ]; then cp "$KDIR"/modules/* "$ROOT/lib/modules/"; fi
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
# uncompressed cpio: unpacking is a memcpy, gunzip under TCG costs more
(cd "$ROOT" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"$OUT/initramfs.img.tmp"
cp "$KDIR/vmlinux" "$OUT/vmlinux.tmp"
mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
mv "$OUT/initramfs.img.tmp" "$OUT/initramfs.img"
# The fixed part of the kernel command line; the lab adds address and name.
# pti=on, not mitigations=off: see "page-table isolation" in kernel.config.
echo "console=ttyS0 quiet acpi=noirq no_timer_check pti=on cryptomgr.notests" >"$OUT/cmdline"
printf '%s\n%s\n' "$STAMP" "$KDIR" >"$OUT/.stamp"
log "wrote $OUT/vmlinux ($(stat -c %s "$OUT/vmlinux") B, kernel $KSEL) and $OUT/initramfs.img ($(stat -c %s "$OUT/initramfs.img") B)"
