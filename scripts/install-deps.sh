#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a fresh Debian 12 machine with
# a Rust toolchain. Idempotent: installs only what is missing. Needs root for apt.
set -euo pipefail

need_apt=()
command -v serf >/dev/null 2>&1 || need_apt+=(serf)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
command -v iptables-restore >/dev/null 2>&1 || need_apt+=(iptables)
# DNS: dig for the kernel tests; dnsperf and dnsmasq for scripts/bench-dns.sh.
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
command -v dnsperf >/dev/null 2>&1 || need_apt+=(dnsperf)
[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null 2>&1 || need_apt+=(dnsmasq-base)
# Kernel-VM tests (cluster-tests/tests/vm_*.rs, scripts/vm/prepare.sh): qemu (TCG), kmod for
# the guest's module closure, cpio for the initramfs, binutils (strip), xz-utils, file; curl,
# conntrack, tcpdump and iperf3 are copied into the guest (tcpdump also captures the guests'
# network on the host).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_apt+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
[ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || command -v depmod >/dev/null 2>&1 || need_apt+=(kmod)
command -v strip >/dev/null 2>&1 || need_apt+=(binutils)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
command -v file >/dev/null 2>&1 || need_apt+=(file)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
[ -x /usr/sbin/conntrack ] || command -v conntrack >/dev/null 2>&1 || need_apt+=(conntrack)
# Container runtimes for the runtime tests (cluster-tests/tests/runtimes_*.rs) and
# scripts/bench-runtimes.sh: podman 4.3 (CNI backend), containerd 1.6 (ctr), dockerd 20.10,
# runc, the reference CNI plugins and a static busybox for the test image.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need_apt+=(busybox-static)
# The Python client example (examples/python) runs in a venv under target/.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/sbin/tcpdump ] || need_apt+=(tcpdump)
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
# The vagrant/ and dist/ checks (cluster-tests/tests/vagrant.rs): systemd-analyze verify of
# the unit; vagrant validate of the Vagrantfile where Debian packages vagrant (bookworm does;
# the libvirt plugin too, for the Vagrantfile's libvirt provider block), else ruby -c;
# and a lint of the shell scripts (shellcheck).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
has_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; }
if ! command -v vagrant >/dev/null 2>&1; then
  if has_candidate vagrant; then
    need_apt+=(vagrant)
    has_candidate vagrant-libvirt && need_apt+=(vagrant-libvirt)
  else
    command -v ruby >/dev/null 2>&1 || need_apt+=(ruby)
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Python packages of examples/python (gRPC, reflection and health clients), in a venv.
pyenv="${CARGO_TARGET_DIR:-target}/pyenv"
if ! "$pyenv/bin/python" -c 'import grpc, grpc_tools, grpc_reflection, grpc_health' >/dev/null 2>&1; then
  echo "install-deps: python venv $pyenv with grpcio, grpcio-tools, grpcio-reflection, grpcio-health-checking"
  /usr/bin/python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check \
    grpcio grpcio-tools grpcio-reflection grpcio-health-checking
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi
