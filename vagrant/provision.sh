#!/bin/sh
# Provisions one swarmnet host: installs the agent binary, writes its configuration, installs
# the systemd unit and (re)starts the agent. Idempotent: a second run with the same inputs
# changes nothing and leaves a running agent alone; a changed input is replaced and the agent
# restarted. The Vagrantfile runs it on every VM; it works on any Debian-like host as root.
#
# Inputs (environment):
#   SWARMNET_ADVERTISE_ADDR  required: the IPv4 address the other hosts reach this one at
#                            (gossip and VXLAN); the agent's gossip sockets bind to it
#   SWARMNET_SEEDS           addresses of other hosts to join, IP or IP:PORT (port 7946),
#                            separated by spaces or commas; this host's own address is dropped
#   SWARMNET_GOSSIP_KEY      required: the cluster's gossip key, 32 or 64 hex digits, the same
#                            on every host (`swarmnet cluster keys generate` makes one)
#   SWARMNET_NODE_NAME       node name [default: the hostname]
#   SWARMNET_BINARY          the swarmnet binary to install [default: /tmp/swarmnet-provision/swarmnet]
#   SWARMNET_UNIT            the systemd unit to install [default: the file next to the binary,
#                            swarmnet.service]
#   SWARMNET_NO_SYSTEMD=1    skip every systemctl call (they are printed instead): for hosts
#                            without systemd, such as the CI's kernel-VM guests, which then
#                            start the unit's ExecStart= themselves
#   SWARMNET_NO_APT=1        never run apt-get; fail naming what is missing instead
#
# Writes /usr/local/bin/swarmnet, /etc/swarmnet/agent.toml (0600: it holds the key) and
# /etc/systemd/system/swarmnet.service. Last line on success:
#   provision: done (changed: <what>|nothing)
set -eu

BIN_DST=/usr/local/bin/swarmnet
CONF_DIR=/etc/swarmnet
CONF_DST=$CONF_DIR/agent.toml
UNIT_DST=/etc/systemd/system/swarmnet.service
GOSSIP_PORT=7946
# Tools: the agent's (nft; ip, nsenter for operators) and the demo's (curl, ping, busybox
# for its small web servers, getent), as command:package.
TOOLS="ip:iproute2 nft:nftables nsenter:util-linux getent:libc-bin curl:curl ping:iputils-ping busybox:busybox"

say() { echo "provision: $*"; }
die() { echo "provision: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
BINARY=${SWARMNET_BINARY:-/tmp/swarmnet-provision/swarmnet}
UNIT=${SWARMNET_UNIT:-$(dirname "$BINARY")/swarmnet.service}
NAME=${SWARMNET_NODE_NAME:-$(hostname)}
ADDR=${SWARMNET_ADVERTISE_ADDR:-}
KEY=${SWARMNET_GOSSIP_KEY:-}
SEEDS=$(echo "${SWARMNET_SEEDS:-}" | tr ',' ' ')

# --- inputs --------------------------------------------------------------------------------
is_ipv4() {
  echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$' || return 1
  for o in $(echo "$1" | tr '.' ' '); do [ "$o" -le 255 ] || return 1; done
}
[ -n "$ADDR" ] || die "SWARMNET_ADVERTISE_ADDR: required (this host's address on the hosts' network)"
is_ipv4 "$ADDR" || die "SWARMNET_ADVERTISE_ADDR: $ADDR is not an IPv4 address"
[ -n "$KEY" ] || die "SWARMNET_GOSSIP_KEY: required (32 or 64 hex digits, the same on every host)"
echo "$KEY" | grep -Eq '^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})$' ||
  die "SWARMNET_GOSSIP_KEY: must be 32 or 64 hex digits (got ${#KEY} characters)"
echo "$NAME" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' ||
  die "SWARMNET_NODE_NAME: $NAME is not a valid node name"
[ -f "$BINARY" ] || die "SWARMNET_BINARY: $BINARY does not exist (build it with scripts/build-static.sh)"
[ -f "$UNIT" ] || die "SWARMNET_UNIT: $UNIT does not exist"
JOIN=""
for s in $SEEDS; do
  case $s in
    *:*) host=${s%:*} port=${s##*:} ;;
    *) host=$s port=$GOSSIP_PORT ;;
  esac
  is_ipv4 "$host" || die "SWARMNET_SEEDS: $s is not IP or IP:PORT"
  case $port in '' | *[!0-9]*) die "SWARMNET_SEEDS: $s has no valid port" ;; esac
  if [ "${#port}" -gt 5 ] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "SWARMNET_SEEDS: $s has no valid port"
  fi
  [ "$host" = "$ADDR" ] && [ "$port" = "$GOSSIP_PORT" ] && continue
  JOIN="$JOIN${JOIN:+, }\"$host:$port\""
done
[ -n "$JOIN" ] || say "no seeds: this host starts a cluster of its own (others join it)"
ip -4 -o addr show 2>/dev/null | grep -q " $ADDR/" ||
  say "warning: no interface holds $ADDR yet (the agent needs it to start)"

# --- tools ---------------------------------------------------------------------------------
missing=""
for pair in $TOOLS; do
  PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  [ "${SWARMNET_NO_APT:-}" != 1 ] || die "missing packages:$missing (SWARMNET_NO_APT=1: not installing)"
  say "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  # shellcheck disable=SC2086 # a list of package names
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || die "apt-get install$missing failed"
fi

# --- files ---------------------------------------------------------------------------------
CHANGED=""
# place SRC DST MODE WHAT: copies SRC to DST (atomically, mode MODE) unless identical.
place() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    chmod "$3" "$2"
    say "$4 $2: unchanged"
    return 0
  fi
  mkdir -p "$(dirname "$2")"
  tmp="$2.provision.$$"
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
  say "$4 $2: written"
  CHANGED="$CHANGED${CHANGED:+, }$4"
}

place "$BINARY" "$BIN_DST" 0755 binary
"$BIN_DST" --version >/dev/null 2>&1 || die "$BIN_DST does not run on this host ($(uname -m))"

CONF_TMP=$(mktemp)
trap 'rm -f "$CONF_TMP"' EXIT
cat > "$CONF_TMP" <<EOF
# swarmnet agent configuration, written by vagrant/provision.sh (it rewrites this file).
# Keys are the flags of \`swarmnet agent --help\` with '_' for '-'.
node_name = "$NAME"
# Gossip (UDP and TCP $GOSSIP_PORT) and VXLAN (UDP 4789) on the hosts' network.
listen_addr = "$ADDR"
advertise_addr = "$ADDR"
# Seeds: other hosts of the cluster; retried until one answers.
join = [$JOIN]
# The cluster's gossip key (every host has the same).
gossip_keys = ["$KEY"]
EOF
mkdir -p "$CONF_DIR"
chmod 0755 "$CONF_DIR"
place "$CONF_TMP" "$CONF_DST" 0600 config
place "$UNIT" "$UNIT_DST" 0644 unit

# --- service -------------------------------------------------------------------------------
systemctl_() {
  if [ "${SWARMNET_NO_SYSTEMD:-}" = 1 ]; then
    say "SWARMNET_NO_SYSTEMD=1: skipped: systemctl $*"
  else
    systemctl "$@"
  fi
}
case $CHANGED in *unit*) systemctl_ daemon-reload ;; esac
systemctl_ enable swarmnet.service
if [ -n "$CHANGED" ]; then
  systemctl_ restart swarmnet.service
elif [ "${SWARMNET_NO_SYSTEMD:-}" = 1 ] || ! systemctl is-active --quiet swarmnet.service; then
  systemctl_ start swarmnet.service
else
  say "agent running, nothing changed: not restarted"
fi
if [ "${SWARMNET_NO_SYSTEMD:-}" != 1 ]; then
  # The agent answers on its API socket once it is up (bounded: 30 s).
  n=0
  until "$BIN_DST" cluster status >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -le 60 ] || { systemctl status --no-pager swarmnet.service || true; die "the agent did not answer within 30 s (journalctl -u swarmnet)"; }
    sleep 0.5
  done
  "$BIN_DST" cluster status
fi
say "done (changed: ${CHANGED:-nothing})"
