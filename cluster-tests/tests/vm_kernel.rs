//! Tier 5: the guest kernel has what the CI kernel lacks, and it works: the IPVS
//! generic-netlink family, an ESP state with `rfc4106(gcm(aes))` carrying traffic, and
//! VXLAN between two namespaces. A feature missing inside the guest is a failure; only a
//! missing qemu or kernel package is a skip.

use cluster_tests::vm::{self, Guest};

fn boot(name: &str, script: &str) -> Option<vm::Run> {
    vm::kit_or_skip()?;
    let r = vm::run(&Guest::new(name, &format!("set -ex\n{script}")));
    println!("{}", r.summary());
    r.expect_success();
    Some(r)
}

#[test]
fn serial_vm_the_guest_kernel_has_the_ipvs_family_and_ipvsadm_programs_it() {
    let Some(r) = boot(
        "ipvs",
        r#"
modprobe ip_vs
grep -q "IP Virtual Server" /proc/net/ip_vs
ipvsadm -A -f 1048577 -s rr
ipvsadm -a -f 1048577 -r 10.0.0.5:0 -m -w 1
ipvsadm -Ln
echo "IPVS-OK $(head -1 /proc/net/ip_vs)"
"#,
    ) else {
        return;
    };
    assert!(
        r.console.contains("IPVS-OK IP Virtual Server"),
        "{}",
        r.console
    );
    assert!(r.console.contains("FWM  1048577 rr"), "{}", r.console);
}

/// Two namespaces joined by a veth; VXLAN (VNI 42) between them; the VXLAN UDP packets
/// protected by transport-mode ESP with `rfc4106(gcm(aes))`, the agent's encrypted-network
/// scheme. Pings over the overlay must pass and the SA packet counters must move.
const ESP_VXLAN: &str = r#"
ip netns add a
ip netns add b
ip link add ua netns a type veth peer name ub netns b
ip -n a link set lo up; ip -n a addr add 10.10.0.1/24 dev ua; ip -n a link set ua up
ip -n b link set lo up; ip -n b addr add 10.10.0.2/24 dev ub; ip -n b link set ub up
ip -n a link add vx0 type vxlan id 42 local 10.10.0.1 remote 10.10.0.2 dstport 4789 dev ua
ip -n b link add vx0 type vxlan id 42 local 10.10.0.2 remote 10.10.0.1 dstport 4789 dev ub
ip -n a addr add 10.20.0.1/24 dev vx0; ip -n a link set vx0 up
ip -n b addr add 10.20.0.2/24 dev vx0; ip -n b link set vx0 up
"#;

const ESP_STATES: &str = r#"
K1=0x0123456789abcdef0123456789abcdef01234567
K2=0x89abcdef0123456789abcdef0123456789abcdef
for ns in a b; do
  ip -n $ns xfrm state add src 10.10.0.1 dst 10.10.0.2 proto esp spi 0x1001 reqid 1 mode transport aead 'rfc4106(gcm(aes))' $K1 128
  ip -n $ns xfrm state add src 10.10.0.2 dst 10.10.0.1 proto esp spi 0x1002 reqid 2 mode transport aead 'rfc4106(gcm(aes))' $K2 128
done
ip -n a xfrm policy add src 10.10.0.1 dst 10.10.0.2 proto udp dport 4789 dir out tmpl src 10.10.0.1 dst 10.10.0.2 proto esp reqid 1 mode transport
ip -n a xfrm policy add src 10.10.0.2 dst 10.10.0.1 proto udp dport 4789 dir in tmpl src 10.10.0.2 dst 10.10.0.1 proto esp reqid 2 mode transport
ip -n b xfrm policy add src 10.10.0.2 dst 10.10.0.1 proto udp dport 4789 dir out tmpl src 10.10.0.2 dst 10.10.0.1 proto esp reqid 2 mode transport
ip -n b xfrm policy add src 10.10.0.1 dst 10.10.0.2 proto udp dport 4789 dir in tmpl src 10.10.0.1 dst 10.10.0.2 proto esp reqid 1 mode transport
"#;

#[test]
fn serial_vm_vxlan_carries_pings_between_two_namespaces_in_the_guest() {
    let Some(r) = boot(
        "vxlan",
        &format!("{ESP_VXLAN}\nip netns exec a ping -c 3 -i 0.2 -W 2 10.20.0.2\necho VXLAN-OK\n"),
    ) else {
        return;
    };
    assert!(r.console.contains("VXLAN-OK"), "{}", r.console);
}

#[test]
fn serial_vm_an_esp_state_with_rfc4106_gcm_aes_is_created_and_encrypts_vxlan() {
    let Some(r) = boot(
        "esp",
        &format!(
            "{ESP_VXLAN}{ESP_STATES}
ip netns exec a ping -c 5 -i 0.2 -W 2 10.20.0.2
pk() {{ ip -n $1 -s xfrm state get src $2 dst $3 proto esp spi $4 | sed -n 's/.* \\([0-9]*\\)(packets).*/\\1/p' | head -1; }}
out=$(pk a 10.10.0.1 10.10.0.2 0x1001); in=$(pk b 10.10.0.1 10.10.0.2 0x1001)
echo \"ESP packets: a out $out, b in $in\"
[ \"$out\" -ge 5 ] && [ \"$in\" -ge 5 ]
grep -A3 '^name *: rfc4106(gcm(aes))' /proc/crypto | grep -E '^(driver|selftest)'
echo ESP-OK
"
        ),
    ) else {
        return;
    };
    assert!(r.console.contains("ESP-OK"), "{}", r.console);
}

/// One side of an ESP-protected VXLAN link between two guests (each its own kernel) over the
/// virtual network: `$ME`/`$PEER` underlay addresses, `$OV_ME`/`$OV_PEER` overlay addresses,
/// `$SPI_OUT`/`$SPI_IN`. Pings the peer over the overlay, stays up until 3 of the peer's
/// overlay pings arrived too (an nftables counter), then checks both SAs counted packets.
/// Bounded: 60 s waits.
const ESP_ACROSS: &str = r#"
K=0x0123456789abcdef0123456789abcdef01234567
ip link add vx0 type vxlan id 42 local $ME remote $PEER dstport 4789 dev eth0
ip addr add $OV_ME/24 dev vx0
ip link set vx0 up
nft add table ip across
nft add chain ip across in '{ type filter hook input priority 0; }'
nft add rule ip across in ip saddr $OV_PEER icmp type echo-request counter
ip xfrm state add src $ME dst $PEER proto esp spi $SPI_OUT reqid 1 mode transport aead 'rfc4106(gcm(aes))' $K 128
ip xfrm state add src $PEER dst $ME proto esp spi $SPI_IN reqid 2 mode transport aead 'rfc4106(gcm(aes))' $K 128
ip xfrm policy add src $ME dst $PEER proto udp dport 4789 dir out tmpl src $ME dst $PEER proto esp reqid 1 mode transport
ip xfrm policy add src $PEER dst $ME proto udp dport 4789 dir in tmpl src $PEER dst $ME proto esp reqid 2 mode transport
n=0
until ping -c 1 -W 1 $OV_PEER >/dev/null 2>&1; do
  n=$((n + 1)); [ $n -lt 60 ] || { echo "FAIL: no overlay ping to $OV_PEER"; exit 1; }
done
ping -c 5 -i 0.2 -W 2 $OV_PEER
n=0
while [ "$(nft list chain ip across in | sed -n 's/.*packets \([0-9]*\).*/\1/p')" -lt 3 ] && [ $n -lt 600 ]; do
  sleep 0.1; n=$((n + 1))
done
pk() { ip -s xfrm state get src $1 dst $2 proto esp spi $3 | sed -n 's/.* \([0-9]*\)(packets).*/\1/p' | head -1; }
out=$(pk $ME $PEER $SPI_OUT); in=$(pk $PEER $ME $SPI_IN)
echo "ESP-ACROSS $(hostname): out $out in $in packets"
[ "$out" -ge 5 ] && [ "$in" -ge 3 ]
"#;

#[test]
fn serial_vm_two_guest_kernels_carry_esp_protected_vxlan_between_them() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let side = |name: &str, me: usize, peer: usize, spi_out: &str, spi_in: &str| {
        Guest::new(
            name,
            &format!(
                "set -e\nME={} PEER={} OV_ME=10.20.0.{} OV_PEER=10.20.0.{} SPI_OUT={spi_out} SPI_IN={spi_in}\n{ESP_ACROSS}",
                vm::guest_addr(me),
                vm::guest_addr(peer),
                me + 1,
                peer + 1
            ),
        )
        .with_cpus(1)
        .with_mem_mb(512)
    };
    let runs = vm::run_network(&[
        side("esp1", 0, 1, "0x1001", "0x1002"),
        side("esp2", 1, 0, "0x1002", "0x1001"),
    ]);
    for r in &runs {
        println!("{}", r.summary());
        if let vm::Outcome::Unavailable(why) = &r.outcome {
            println!("skipped: {why}");
            return;
        }
    }
    for r in &runs {
        r.expect_success();
        assert!(r.console.contains("ESP-ACROSS"), "{}", r.console);
    }
}
