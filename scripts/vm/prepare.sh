#!/usr/bin/env bash
# Prepares, once, what the kernel-VM tests boot: Debian's stock kernel (raw vmlinux, which
# qemu boots through its PVH entry without the slow in-guest xz decompression) and a base
# initramfs (busybox-static, dash, bash, the kernel modules the tests need with their
# dependency closure, and the network tools with their shared libraries: iproute2, nft,
# nsenter, getent, curl, ping, conntrack, tcpdump, iperf3, ipvsadm, and coreutils' install,
# which busybox lacks and the README's host steps use).
#
# Usage: scripts/vm/prepare.sh [CACHE_DIR]
#   CACHE_DIR defaults to $SWARMNET_VM_CACHE, else <repo>/target/vm-cache.
# Prints `kit=<dir>` as its last line; <dir> holds vmlinux, base.cpio.gz, kernel-release and
# manifest (package versions and module list). The kit is keyed by a hash of the package
# versions it is built from and of this script and the guest init, so a new kernel package
# (or a changed recipe) builds a new kit and an unchanged one is reused at once.
#
# Exit status: 0 ready; 3 unavailable (qemu or the kernel package cannot be obtained: the last
# stderr line says why; tests then print "skipped: <reason>"); anything else is a failure.
# Needs root only to install missing host tools (apt-get) and to refresh apt's lists.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${1:-${SWARMNET_VM_CACHE:-$REPO/target/vm-cache}}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

unavailable() { echo "unavailable: $*" >&2; exit 3; }
log() { echo "vm-prepare: $*" >&2; }

# One preparation at a time per cache (several test binaries may ask at once).
exec 9>"$CACHE/.lock"
flock 9

# --- host tools -------------------------------------------------------------------------------
# qemu (TCG), kmod (depmod, modprobe --show-depends against the extracted tree), cpio, xz,
# and the tools copied into the guest. Installed when missing (root), else unavailable.
GUEST_TOOLS="ip:iproute2 bridge:iproute2 ss:iproute2 nft:nftables nsenter:util-linux \
  getent:libc-bin curl:curl ping:iputils-ping conntrack:conntrack tcpdump:tcpdump iperf3:iperf3 \
  install:coreutils"
HOST_TOOLS="qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod modprobe:kmod xz:xz-utils \
  file:file flock:util-linux dpkg-deb:dpkg objcopy:binutils"
need=()
for pair in $HOST_TOOLS $GUEST_TOOLS; do
  tool=${pair%%:*} pkg=${pair#*:}
  PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || unavailable "missing ${need[*]} and not root to install them"
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
    unavailable "cannot install ${need[*]} (apt-get install failed)"
fi
export PATH=$PATH:/usr/sbin:/sbin

# --- which packages --------------------------------------------------------------------------
# Fast path: while apt's lists, dpkg's database and the recipe are unchanged since the last
# resolution, the kit it named is still the right one (saves ~1 s of apt-cache per test).
signature() {
  stat -c '%n %Y %s' /var/lib/apt/lists /var/lib/dpkg/status "$HERE/prepare.sh" "$HERE/init" 2>/dev/null
}
SIG=$(signature | sha256sum | cut -c1-16)
if [ -f "$CACHE/.resolved" ]; then
  read -r old_sig old_kit < "$CACHE/.resolved" || true
  if [ "${old_sig:-}" = "$SIG" ] && [ -f "${old_kit:-/nonexistent}/ready" ]; then
    echo "kit=$old_kit"
    exit 0
  fi
fi
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
KPKG_NAME=$(kernel_pkg)
if [ -z "$KPKG_NAME" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >&2 || true
  KPKG_NAME=$(kernel_pkg)
  SIG=$(signature | sha256sum | cut -c1-16)
fi
[ -n "$KPKG_NAME" ] || unavailable "apt knows no linux-image-amd64 (no Debian package lists?)"
DEBS="$KPKG_NAME busybox-static ipvsadm libnl-3-200 libnl-genl-3-200 libpopt0"
# Candidate versions, one apt-cache call: "package version" lines.
apt-cache show --no-all-versions $DEBS 2>/dev/null |
  awk '/^Package:/{p=$2} /^Version:/{print p, $2}' > "$CACHE/.candidates" || true
candidate() { awk -v p="$1" '$1==p{print $2; exit}' "$CACHE/.candidates"; }
{
  for p in $DEBS; do echo "deb $p $(candidate "$p")"; done
  dpkg-query -W -f 'host ${Package} ${Version}\n' iproute2 nftables util-linux libc-bin libc6 curl \
    iputils-ping conntrack tcpdump iperf3 libiperf0 bash dash kmod coreutils 2>/dev/null | sort
  sha256sum "$HERE/prepare.sh" "$HERE/init" | awk '{print "recipe", $1}'
} > "$CACHE/.key.txt"
KEY=$(sha256sum < "$CACHE/.key.txt" | cut -c1-16)
KIT=$CACHE/kit-$KEY
if [ -f "$KIT/ready" ]; then
  echo "$SIG $KIT" > "$CACHE/.resolved"
  echo "kit=$KIT"
  exit 0
fi

T0=$(date +%s.%N)
log "building kit $KEY ($KPKG_NAME) in $CACHE"
WORK=$CACHE/tmp-$KEY
rm -rf "$WORK"
mkdir -p "$WORK" "$CACHE/debs"
trap 'rm -rf "$WORK"' EXIT

# --- download and extract (never installed on the host) ---------------------------------------
(
  cd "$CACHE/debs"
  for p in $DEBS; do
    v=$(candidate "$p")
    [ -n "$v" ] || unavailable "apt has no candidate for $p"
    ls "${p}_"*.deb >/dev/null 2>&1 && dpkg-deb -f "$(ls "${p}_"*.deb | head -1)" Version | grep -qx "$v" && continue
    rm -f "${p}_"*.deb
    apt-get download -q "$p" >&2 2>&1 || unavailable "apt-get download $p failed"
  done
)
mkdir -p "$WORK/kpkg" "$WORK/pkgs"
dpkg -x "$CACHE/debs/${KPKG_NAME}_"*.deb "$WORK/kpkg"
for p in busybox-static ipvsadm libnl-3-200 libnl-genl-3-200 libpopt0; do
  dpkg -x "$(ls "$CACHE/debs/${p}_"*.deb | head -1)" "$WORK/pkgs"
done
KV=$(ls "$WORK/kpkg/lib/modules")
MODDIR=$WORK/kpkg/lib/modules/$KV
depmod -b "$WORK/kpkg" "$KV" # the package ships no modules.dep (its postinst makes it)

# The raw ELF inside the xz-compressed bzImage: qemu boots it through its PVH entry.
VMLINUZ=$WORK/kpkg/boot/vmlinuz-$KV
OFF=$(LC_ALL=C grep -aobP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1 || true)
[ -n "$OFF" ] || { echo "no xz stream in $VMLINUZ" >&2; exit 1; }
tail -c +$((OFF + 1)) "$VMLINUZ" > "$WORK/vmlinux.xz"
xz -dc --single-stream "$WORK/vmlinux.xz" > "$WORK/vmlinux"
rm "$WORK/vmlinux.xz"
file "$WORK/vmlinux" | grep -q 'ELF 64-bit' || { echo "extracted vmlinux is not an ELF" >&2; exit 1; }

# --- root filesystem -------------------------------------------------------------------------
ROOT=$WORK/rootfs
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,proc,sys,dev,tmp,run,etc,root,var,mnt,test}
ln -s ../lib "$ROOT/usr/lib"
ln -s ../run "$ROOT/var/run"

# busybox-static with its applets; /bin/sh is dash because Debian's static busybox ash runs
# its own applets before $PATH (`ip` would be busybox's, without netns or xfrm).
cp "$WORK/pkgs/bin/busybox" "$ROOT/bin/busybox"
file -L "$ROOT/bin/busybox" | grep -q 'statically linked' || { echo "busybox is not static" >&2; exit 1; }
for a in $("$ROOT/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"
done
for a in modprobe insmod rmmod lsmod depmod poweroff reboot halt; do ln -sf ../bin/busybox "$ROOT/sbin/$a"; done
for sh in dash bash; do cp "$(readlink -f "$(command -v $sh)")" "$ROOT/bin/$sh"; done
ln -sf dash "$ROOT/bin/sh"

# Kernel modules: whole netfilter/IPVS/xfrm/bridge/crypto trees plus the drivers named here,
# with the dependency closure computed by the host's kmod against the extracted tree. drbg,
# sha512_generic, jitterentropy_rng and sha3_generic are what ESP's IV generators need for
# their "stdrng" (without them `ip xfrm state add ... rfc4106(gcm(aes))` fails with ENOENT).
REQUIRED_MODULES="ip_vs ip_vs_rr ip_vs_wrr nf_tables nf_conntrack nf_conntrack_netlink nf_nat
  nft_chain_nat nft_ct nft_nat nft_numgen nft_reject_inet esp4 xfrm_user vxlan veth bridge dummy
  virtio_pci virtio_net gcm ghash_generic seqiv echainiv ctr drbg sha512_generic
  jitterentropy_rng sha3_generic 9p 9pnet_virtio tun"
OPTIONAL_MODULES="aesni_intel ghash_clmulni_intel sha256_ssse3 sha512_ssse3 esp6 af_key
  xfrm_interface macvlan ipvlan geneve wireguard sch_netem sch_ingress sch_htb cls_u32"
{
  for m in $REQUIRED_MODULES; do echo "$m"; done
  for m in $OPTIONAL_MODULES; do modinfo -b "$WORK/kpkg" -k "$KV" -n "$m" >/dev/null 2>&1 && echo "$m"; done
  for d in net/netfilter net/ipv4 net/ipv6 net/bridge net/xfrm net/key net/sched crypto; do
    [ -d "$MODDIR/kernel/$d" ] && find "$MODDIR/kernel/$d" -name '*.ko' -printf '%f\n' | sed 's/\.ko$//'
  done
} | sort -u > "$WORK/modules.wanted"
while read -r m; do
  modprobe -d "$WORK/kpkg" -S "$KV" --show-depends "$m" ||
    { echo "module $m not in the kernel package" >&2; exit 1; }
done < "$WORK/modules.wanted" | awk '$1=="insmod"{print $2}' | sort -u > "$WORK/modules.ko"
while read -r ko; do
  rel=${ko#"$MODDIR"/}
  mkdir -p "$ROOT/lib/modules/$KV/$(dirname "$rel")"
  cp "$ko" "$ROOT/lib/modules/$KV/$rel"
done < "$WORK/modules.ko"
cp "$MODDIR"/modules.{order,builtin,builtin.modinfo} "$ROOT/lib/modules/$KV/"
depmod -b "$ROOT" "$KV"

# Binaries and their shared libraries.
copy_libs() {
  LD_LIBRARY_PATH="$WORK/pkgs/usr/lib/x86_64-linux-gnu:$WORK/pkgs/lib/x86_64-linux-gnu" ldd "$1" 2>/dev/null |
    awk '/=> \//{print $3} /^\s*\/.*ld-linux/{print $1}' | while read -r lib; do
      cp -L -n "$lib" "$ROOT/lib/x86_64-linux-gnu/$(basename "$lib")"
    done
}
add_bin() { # path-in-host
  local p
  p=$(readlink -f "$1")
  cp "$p" "$ROOT/usr/sbin/$(basename "$1")"
  copy_libs "$p"
}
add_bin "$WORK/pkgs/sbin/ipvsadm"
for pair in $GUEST_TOOLS; do add_bin "$(command -v "${pair%%:*}")"; done
copy_libs "$ROOT/bin/dash"
copy_libs "$ROOT/bin/bash"
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"
cp /etc/protocols /etc/services "$ROOT/etc/" 2>/dev/null || true
mkdir -p "$ROOT/etc/iproute2"
cp -r /etc/iproute2/* "$ROOT/etc/iproute2/" 2>/dev/null || true
[ -d /usr/share/iproute2 ] && mkdir -p "$ROOT/usr/share" && cp -r /usr/share/iproute2 "$ROOT/usr/share/"
# tcpdump drops its privileges to the user tcpdump once it runs.
printf 'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:100:101::/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\ntcpdump:x:101:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
printf 'passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n' > "$ROOT/etc/nsswitch.conf"
: > "$ROOT/etc/resolv.conf"
install -m 755 "$HERE/init" "$ROOT/init"
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3

(cd "$ROOT" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 > "$WORK/base.cpio.gz"

echo "$KV" > "$WORK/kernel-release"
{
  cat "$CACHE/.key.txt"
  echo "modules $(wc -l < "$WORK/modules.ko")"
  echo "rootfs $(du -sh "$ROOT" | cut -f1) base.cpio.gz $(du -h "$WORK/base.cpio.gz" | cut -f1)"
} > "$WORK/manifest"
mkdir -p "$WORK/kit"
mv "$WORK/vmlinux" "$WORK/base.cpio.gz" "$WORK/kernel-release" "$WORK/manifest" "$WORK/kit/"
# Only the newest kit is kept (a kit is ~80 MB).
for old in "$CACHE"/kit-*; do [ -e "$old" ] && rm -rf "$old"; done
mv "$WORK/kit" "$KIT"
touch "$KIT/ready"
echo "$SIG $KIT" > "$CACHE/.resolved"
log "kit $KEY ready in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}") s: $(tail -1 "$KIT/manifest")"
echo "kit=$KIT"
