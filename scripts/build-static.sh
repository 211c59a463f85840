#!/usr/bin/env bash
# Builds `swarmnet` as one static x86_64 Linux executable (no shared libraries, not even libc),
# so the same file runs on any x86_64 Linux host or VM without Rust: what vagrant/ copies into
# its VMs, and what "Run it on your hosts" in README.md installs.
#
# Usage: scripts/build-static.sh [-- CARGO-ARGS...]   (e.g. -- --features demo)
# Output: target/static/swarmnet (and swarmnet.sha256); the last line names it.
#
# Target: x86_64-unknown-linux-musl when rustup has it or can add it (musl's resolver needs no
# NSS modules at run time); otherwise x86_64-unknown-linux-gnu with `-C target-feature=+crt-static`,
# a static glibc build (it runs anywhere too; only resolving a host *name* in a seed address
# would want the build machine's glibc NSS modules, so give seeds as IP addresses).
# SWARMNET_STATIC_TARGET=musl|gnu forces one.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "build-static: $*" >&2; }
extra=()
if [ "${1:-}" = -- ]; then
  shift
  extra=("$@")
elif [ $# -gt 0 ]; then
  echo "usage: $0 [-- CARGO-ARGS...]" >&2
  exit 2
fi
[ "$(uname -m)" = x86_64 ] || { log "builds x86_64 binaries on x86_64 Linux only (this is $(uname -m))"; exit 1; }

MUSL=x86_64-unknown-linux-musl
GNU=x86_64-unknown-linux-gnu
musl_ready() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx "$MUSL" && return 0
  log "rustup target add $MUSL"
  rustup target add "$MUSL" >&2 2>/dev/null
}
case "${SWARMNET_STATIC_TARGET:-}" in
  musl) TARGET=$MUSL ;;
  gnu) TARGET=$GNU ;;
  "") if musl_ready; then TARGET=$MUSL; else TARGET=$GNU; fi ;;
  *) log "SWARMNET_STATIC_TARGET must be musl or gnu"; exit 2 ;;
esac

# With --target, RUSTFLAGS apply to the binary only, not to build scripts and proc macros.
if [ "$TARGET" = "$GNU" ]; then
  log "target $GNU with +crt-static (static glibc; the musl target is not available)"
  export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
else
  log "target $MUSL"
  # ring compiles C and assembly for the target: musl-gcc if present, else the host's cc
  # (its objects do not depend on the C library).
  if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-cc}
  fi
fi
T0=$SECONDS
cargo build --release --locked --target "$TARGET" -p agent --bin swarmnet "${extra[@]}"
BIN=target/$TARGET/release/swarmnet
if ldd "$BIN" 2>&1 | grep -q '=>'; then
  log "$BIN is linked dynamically: $(ldd "$BIN" 2>&1 | tr '\n' ' ')"
  exit 1
fi
mkdir -p target/static
# Debug info stays out of the copy that travels (the build keeps it in $BIN).
objcopy --strip-debug "$BIN" target/static/swarmnet.tmp 2>/dev/null || cp "$BIN" target/static/swarmnet.tmp
chmod 0755 target/static/swarmnet.tmp
mv -f target/static/swarmnet.tmp target/static/swarmnet
(cd target/static && sha256sum swarmnet > swarmnet.sha256)
log "built in $((SECONDS - T0)) s: $(du -h target/static/swarmnet | cut -f1), $TARGET, $(target/static/swarmnet --version)"
echo "$(pwd)/target/static/swarmnet"
