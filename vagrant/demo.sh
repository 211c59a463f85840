#!/usr/bin/env bash
# The three-VM demo (README.md in this folder), run on this machine after `vagrant up`:
# an overlay network and a service created on node1, a backend container on every VM (a
# network namespace serving HTTP with busybox httpd) and a client container on node1; then
# pings across the VMs, names from the embedded DNS, the service's VIP balanced over the
# three VMs, a backend drained, the CLI's tables, and everything removed again.
#
# Usage: ./demo.sh            run the demo, then clean up (also on an error or Ctrl-C)
#        ./demo.sh --keep     leave the network, service and containers in place
#        ./demo.sh --cleanup  only remove what a kept (or interrupted) demo left
#
# Every step runs as root in one of the VMs: through `ssh` with the configuration `vagrant
# ssh-config` prints (one slow vagrant call, then plain ssh). Environment:
#   SWARMNET_DEMO_VMS   the three VMs [node1 node2 node3]
#   SWARMNET_DEMO_EXEC  a program to use instead of ssh: called as `PROGRAM VM`, it runs the
#                       shell script on its stdin as root in VM, passes the output through
#                       and exits with the script's status (the CI runs this very file
#                       against kernel-VM guests that way: cluster-tests/tests/vagrant.rs)
set -euo pipefail
cd "$(dirname "$0")"

NETWORK=demo
SERVICE=web
STEPS=7
MODE=run
case "${1:-}" in
  "") ;;
  --keep) MODE=keep ;;
  --cleanup) MODE=cleanup ;;
  *) echo "usage: $0 [--keep|--cleanup]" >&2; exit 2 ;;
esac
read -r -a VMS <<< "${SWARMNET_DEMO_VMS:-node1 node2 node3}"
[ ${#VMS[@]} -eq 3 ] || { echo "demo.sh: SWARMNET_DEMO_VMS must name three VMs" >&2; exit 2; }
T0=$SECONDS

# --- reaching the VMs --------------------------------------------------------------------------
if [ -n "${SWARMNET_DEMO_EXEC:-}" ]; then
  run_on() { "$SWARMNET_DEMO_EXEC" "$1"; }
else
  command -v vagrant >/dev/null || { echo "demo.sh: vagrant is not installed" >&2; exit 1; }
  SSH_CONFIG=$(mktemp)
  trap 'rm -f "$SSH_CONFIG"' EXIT
  vagrant ssh-config "${VMS[@]}" > "$SSH_CONFIG" 2>/dev/null || {
    echo "demo.sh: \`vagrant ssh-config ${VMS[*]}\` failed: are the VMs up? (vagrant up)" >&2
    exit 1
  }
  run_on() { ssh -F "$SSH_CONFIG" -o LogLevel=ERROR -o BatchMode=yes -T "$1" sudo sh -s; }
fi
# on VM SCRIPT: runs SCRIPT (sh) as root in VM.
on() { printf '%s\n' "$2" | run_on "$1"; }
# show VM COMMAND: prints the command, runs it in VM and prints its output indented.
show() {
  echo "      \$ $2    # on $1"
  on "$1" "$2" 2>&1 | sed 's/^/        /'
}
step() { printf '\n[%s/%s] %s\n' "$1" "$STEPS" "$2"; }
fail() { echo "demo.sh: $*" >&2; exit 1; }

# --- cleanup (idempotent) ---------------------------------------------------------------------
# Containers of VM $1 (its index $2): the backend web<i>, and the client on the first VM.
containers() { if [ "$2" = 1 ]; then echo "web$2 client"; else echo "web$2"; fi; }

cleanup_vm() { # VM INDEX
  on "$1" "
for c in $(containers "$1" "$2"); do
  for p in \$(ip netns pids \$c 2>/dev/null); do kill \$p 2>/dev/null || true; done
  swarmnet endpoint detach \$c --network $NETWORK >/dev/null 2>&1 || true
  ip netns del \$c 2>/dev/null || true
  rm -rf /etc/netns/\$c /run/swarmnet-demo/\$c
done
rmdir /run/swarmnet-demo 2>/dev/null || true"
}

cleanup() {
  for i in 3 2 1; do cleanup_vm "${VMS[$((i - 1))]}" "$i"; done
  # The network can go once every VM's endpoints are gone from the tables (gossip: ms).
  on "${VMS[0]}" "
swarmnet service rm $SERVICE >/dev/null 2>&1 || true
n=0
while swarmnet network inspect $NETWORK >/dev/null 2>&1; do
  swarmnet network rm $NETWORK >/dev/null 2>&1 && break
  n=\$((n + 1)); [ \$n -le 40 ] || { echo 'network $NETWORK not removed within 20 s' >&2; exit 1; }
  sleep 0.5
done"
}

check_clean() {
  local left=""
  for i in 1 2 3; do
    local vm=${VMS[$((i - 1))]}
    local out
    out=$(on "$vm" "
ip netns list | awk '\$1 ~ /^(web[0-9]+|client)\$/ {print \"namespace \" \$1}'
swarmnet network ls | awk 'NR > 1 && \$1 == \"$NETWORK\" {print \"network $NETWORK\"}'
swarmnet service ls | awk 'NR > 1 && \$1 == \"$SERVICE\" {print \"service $SERVICE\"}'")
    [ -z "$out" ] || left="$left $vm: $(echo "$out" | paste -sd, -)"
  done
  [ -z "$left" ] || fail "left behind:$left"
}

FAILED_AT=""
on_exit() {
  local rc=$?
  [ -n "${SSH_CONFIG:-}" ] && rm -f "$SSH_CONFIG"
  if [ $rc -ne 0 ] && [ "$MODE" = run ]; then
    echo "demo.sh: failed${FAILED_AT:+ in step $FAILED_AT}; cleaning up" >&2
    cleanup >/dev/null 2>&1 || echo "demo.sh: cleanup failed too: ./demo.sh --cleanup" >&2
  fi
  exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

if [ "$MODE" = cleanup ]; then
  cleanup
  check_clean
  echo "demo.sh: cleaned up: no demo network, service or container is left on ${VMS[*]}"
  exit 0
fi

echo "swarmnet on three VMs: ${VMS[*]}, each running \`swarmnet agent\` under systemd."
echo "An overlay network and a service across them, a backend container on every VM, a"
echo "client container on ${VMS[0]}. Containers are plain network namespaces (no Docker)."

# --- 1 ----------------------------------------------------------------------------------------
FAILED_AT=1
step 1 "The cluster: every agent sees all three (joined through the seeds in its config)"
for vm in "${VMS[@]}"; do
  on "$vm" '
command -v swarmnet >/dev/null || { echo "swarmnet is not installed (vagrant provision)" >&2; exit 1; }
n=0
until [ "$(swarmnet cluster members 2>/dev/null | awk '"'"'NR > 1 && $5 == "up"'"'"' | wc -l)" -ge 3 ]; do
  n=$((n + 1))
  [ $n -le 120 ] || { swarmnet cluster members >&2; echo "fewer than 3 members up after 60 s" >&2; exit 1; }
  sleep 0.5
done' || fail "the agent on $vm does not see three members up (systemctl status swarmnet; journalctl -u swarmnet)"
done
show "${VMS[0]}" "swarmnet cluster members"
cleanup >/dev/null 2>&1 || true # what an interrupted earlier run may have left

# --- 2 ----------------------------------------------------------------------------------------
FAILED_AT=2
step 2 "Network $NETWORK and service $SERVICE, created on ${VMS[0]} (the others learn them by gossip)"
show "${VMS[0]}" "swarmnet network create $NETWORK"
out=$(on "${VMS[0]}" "swarmnet service create $SERVICE --network $NETWORK --port 80")
echo "      \$ swarmnet service create $SERVICE --network $NETWORK --port 80    # on ${VMS[0]}"
echo "$out" | sed 's/^/        /'
VIP=$(echo "$out" | awk '$1 == "VIP:" {print $2; exit}')
[ -n "$VIP" ] || fail "service create printed no VIP"
for vm in "${VMS[@]:1}"; do
  on "$vm" "n=0; until swarmnet network inspect $NETWORK >/dev/null 2>&1; do n=\$((n + 1)); [ \$n -le 40 ] || exit 1; sleep 0.25; done" ||
    fail "$vm did not learn network $NETWORK within 10 s"
done
echo "      ${VMS[1]} and ${VMS[2]} list network $NETWORK too"

# --- 3 ----------------------------------------------------------------------------------------
FAILED_AT=3
step 3 "A backend container on every VM (busybox httpd on port 80) and a client on ${VMS[0]}"
WEB_IP=() # by backend number
for i in 1 2 3; do
  vm=${VMS[$((i - 1))]}
  attach="swarmnet endpoint attach $NETWORK --netns /var/run/netns/web$i --name web$i --service $SERVICE --resolv-conf /etc/netns/web$i/resolv.conf"
  echo "      \$ ip netns add web$i; ip -n web$i link set lo up    # on $vm"
  echo "      \$ $attach"
  out=$(on "$vm" "
set -e
ip netns add web$i
ip -n web$i link set lo up
mkdir -p /etc/netns/web$i /run/swarmnet-demo/web$i/cgi-bin
cat > /run/swarmnet-demo/web$i/cgi-bin/index.cgi <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
a=\${REMOTE_ADDR#\\[}; a=\${a#::ffff:}; a=\${a%\\]}
echo \"web$i on \$(hostname), to client \$a\"
EOF
chmod 755 /run/swarmnet-demo/web$i/cgi-bin/index.cgi
$attach
ip netns exec web$i busybox httpd -p 80 -h /run/swarmnet-demo/web$i")
  echo "$out" | sed 's/^/        /'
  WEB_IP[i]=$(echo "$out" | awk '$1 == "IP:" {print $2; exit}')
  [ -n "${WEB_IP[i]}" ] || fail "attach of web$i printed no IP"
done
echo "      \$ ip netns exec webN busybox httpd -p 80 -h /run/swarmnet-demo/webN    # its /cgi-bin/index.cgi answers"
attach="swarmnet endpoint attach $NETWORK --netns /var/run/netns/client --name client --resolv-conf /etc/netns/client/resolv.conf"
echo "      \$ ip netns add client; ip -n client link set lo up    # on ${VMS[0]}"
echo "      \$ $attach"
out=$(on "${VMS[0]}" "set -e; ip netns add client; ip -n client link set lo up; mkdir -p /etc/netns/client; $attach")
echo "$out" | sed 's/^/        /'
CLIENT_IP=$(echo "$out" | awk '$1 == "IP:" {print $2; exit}')
CLIENT_IP=${CLIENT_IP%/*}
show "${VMS[0]}" "cat /etc/netns/client/resolv.conf    # written by the agent; ip netns exec mounts it"

# --- 4 ----------------------------------------------------------------------------------------
FAILED_AT=4
step 4 "Pings across the VMs, by name (3 each way round the ring), and the VIP from the client"
for i in 1 2 3; do
  j=$((i % 3 + 1))
  vm=${VMS[$((i - 1))]}
  # The first packets may find the remote VM still programming its FDB (milliseconds).
  show "$vm" "ip netns exec web$i sh -c 'n=0; until ping -c 1 -W 1 web$j >/dev/null 2>&1; do n=\$((n + 1)); [ \$n -le 20 ] || break; done; ping -c 3 -i 0.2 -W 2 web$j'" ||
    fail "web$i ($vm) cannot ping web$j (${WEB_IP[j]})"
done
show "${VMS[0]}" "ip netns exec client ping -c 3 -i 0.2 -W 2 $VIP" || fail "the client cannot ping the VIP $VIP"

# --- 5 ----------------------------------------------------------------------------------------
FAILED_AT=5
step 5 "Names from the embedded DNS (127.0.0.11 in every container, answered by its VM's agent)"
# NAME:COUNT: the name and how many addresses it has (tasks.web: the three backends). A node
# that was just declared down and back (gossip refutes it within seconds) may be missing
# from an answer for a moment, so each name is asked until it has them all (at most 10 s).
for pair in web3:1 web3.$NETWORK:1 $SERVICE:1 tasks.$SERVICE:3; do
  name=${pair%:*} want=${pair##*:}
  echo "      \$ ip netns exec client getent ahostsv4 $name    # on ${VMS[0]}, addresses only"
  on "${VMS[0]}" "
n=0
while :; do
  got=\$(ip netns exec client getent ahostsv4 $name | awk '{print \$1}' | sort -u)
  [ \$(echo \"\$got\" | grep -c .) -ge $want ] && break
  n=\$((n + 1)); [ \$n -le 20 ] || { echo \"$name: \${got:-no answer}\" >&2; exit 1; }
  sleep 0.5
done
echo \"\$got\" | paste -sd' ' -" 2>&1 | sed 's/^/        /' || fail "the client cannot resolve $name"
done

# --- 6 ----------------------------------------------------------------------------------------
FAILED_AT=6
step 6 "The VIP balanced over the three VMs (6 requests to http://$SERVICE/), then web2 drained"
# round N: N rounds of 6 requests at most, until the answers meet CONDITION (awk on the
# answers, one a line); prints the last round.
rounds() { # N AWK-CONDITION
  on "${VMS[0]}" "
n=0
while :; do
  out=\$(for k in 1 2 3 4 5 6; do ip netns exec client curl -s -m 3 http://$SERVICE/ || echo '(no answer)'; done)
  n=\$((n + 1))
  if echo \"\$out\" | awk '$2' >/dev/null; then echo \"\$out\"; exit 0; fi
  [ \$n -lt $1 ] || { echo \"\$out\"; exit 1; }
  sleep 0.5
done"
}
echo "      \$ ip netns exec client curl -s http://$SERVICE/    # 6 times, on ${VMS[0]}"
out=$(rounds 20 '{seen[$1]++} END {exit !(seen["web1"] && seen["web2"] && seen["web3"])}') ||
  { echo "$out" | sed 's/^/        /'; fail "the VIP did not reach all three backends"; }
echo "$out" | sed 's/^/        /'
if echo "$out" | grep -v " to client $CLIENT_IP\$" | grep -q .; then
  fail "a backend saw another address than the client's own ($CLIENT_IP)"
fi
echo "      every backend answered, and each saw the client's own address $CLIENT_IP"
show "${VMS[1]}" "swarmnet endpoint disable web2    # drain before stopping it"
echo "      \$ ip netns exec client curl -s http://$SERVICE/    # 6 times, on ${VMS[0]}"
rounds 20 '{seen[$1]++} END {exit !(!seen["web2"] && seen["web1"] && seen["web3"])}' | sed 's/^/        /' ||
  fail "web2 did not leave the rotation"
echo "      web2 left the rotation: new requests go to web1 and web3 only"
show "${VMS[2]}" "swarmnet service inspect $SERVICE"
show "${VMS[1]}" "swarmnet network ls"
show "${VMS[2]}" "swarmnet endpoint ls"

# --- 7 ----------------------------------------------------------------------------------------
FAILED_AT=7
if [ "$MODE" = keep ]; then
  step 7 "Kept: the network, service and containers stay (./demo.sh --cleanup removes them)"
  echo "      try: vagrant ssh ${VMS[1]} -c 'sudo ip netns exec web2 ping -c 2 web1'"
  echo "           vagrant ssh ${VMS[0]} -c 'sudo swarmnet service inspect $SERVICE'"
else
  step 7 "Cleanup: servers stopped, endpoints detached, namespaces, service and network removed"
  cleanup
  check_clean
  echo "      nothing of the demo is left on ${VMS[*]}; the agents keep running"
fi
FAILED_AT=""
echo
echo "demo finished in $((SECONDS - T0)) s"
