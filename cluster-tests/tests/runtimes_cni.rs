//! Real runtimes through `swarmnet-cni` on a two-host lab cluster: podman 4.3 (CNI backend)
//! and containerd 1.6 (`ctr run --cni`), one instance per host namespace, busybox-static
//! containers. Containers on different hosts ping each other over the overlay and find each
//! other by name through the agent's resolver; removing a container releases its address
//! and leaves no interface (podman: through CNI DEL; ctr, which never sends DEL for a
//! detached container: through the agent collecting endpoints whose namespace is gone).
//!
//! Needs root, podman, containerd, runc and busybox-static (scripts/install-deps.sh);
//! otherwise it prints "skipped: <reason>". Named `serial_*`: nextest runs them alone.

use std::path::PathBuf;
use std::time::Duration;

use cluster_tests::cni::swarmnet_cni;
use cluster_tests::harness::cluster_with;
use cluster_tests::runtimes::containerd::Containerd;
use cluster_tests::runtimes::podman::Podman;
use cluster_tests::runtimes::{image, process, skip_reason, work_dir};
use lab::testbed::AgentCluster;
use serde_json::json;

fn conflist(socket: &str) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "app",
        "plugins": [{
            "type": "swarmnet-cni",
            "network": "app",
            "agentSocket": socket,
            "capabilities": {"aliases": true, "ips": true, "mac": true}
        }]
    })
    .to_string()
}

fn socket(c: &AgentCluster, i: usize) -> String {
    c.hosts[i].api.trim_start_matches("unix://").to_string()
}

/// Endpoints host `i`'s agent lists on `app`, by name -> bare IP.
fn endpoints(c: &AgentCluster, i: usize) -> Vec<(String, String, bool)> {
    let v = c
        .cli_json(i, &["endpoint", "ls", "--network", "app"])
        .unwrap_or(json!([]));
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["ip"]
                    .as_str()
                    .unwrap_or_default()
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                e["local"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn local_ip(c: &AgentCluster, i: usize, name: &str) -> Option<String> {
    endpoints(c, i)
        .into_iter()
        .find(|(n, _, local)| n == name && *local)
        .map(|(_, ip, _)| ip)
}

/// The interfaces of host `i`'s namespace that are not the lab's own.
fn host_links(c: &AgentCluster, i: usize) -> Vec<String> {
    c.lab
        .exec_ok(&c.hosts[i].netns, &["ip", "-o", "link"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect()
}

fn two_hosts(name: &str) -> Option<AgentCluster> {
    let c = cluster_with(name, |o| {
        o.hosts = 2;
        o.reconcile_interval_secs = Some(2);
    })?;
    c.create_network(0, "app", &["--subnet", "10.62.0.0/24"])
        .expect("network app");
    Some(c)
}

fn plugin_dir(dir: &std::path::Path) -> PathBuf {
    let d = dir.join("cni-plugins");
    std::fs::create_dir_all(&d).unwrap();
    let _ = std::fs::remove_file(d.join("swarmnet-cni"));
    std::os::unix::fs::symlink(swarmnet_cni(), d.join("swarmnet-cni")).unwrap();
    d
}

#[test]
fn serial_podman_containers_on_two_hosts_reach_each_other_through_swarmnet() {
    if let Some(why) = skip_reason(&["podman", "runc", "conmon", "nsenter"]) {
        println!("skipped: {why}");
        return;
    }
    if image::busybox_binary().is_none() {
        println!("skipped: busybox-static is not installed (scripts/install-deps.sh)");
        return;
    }
    let Some(mut c) = two_hosts("podman") else {
        return;
    };
    let dir = work_dir("podman");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let img = image::build(&dir).expect("busybox image");
    let plugins = plugin_dir(&dir);
    let hosts: Vec<Podman> = (0..2)
        .map(|i| {
            let p = Podman::setup(
                &c.hosts[i].netns,
                &dir.join(format!("h{i}")),
                i,
                &plugins,
                &[("app.conflist", conflist(&socket(&c, i)))],
            )
            .unwrap();
            p.import(&img.rootfs_tar).expect("podman import");
            p
        })
        .collect();
    let image = hosts[0].image();
    let before = host_links(&c, 1);

    hosts[0]
        .ok(&[
            "run",
            "-d",
            "--name",
            "a1",
            "--network",
            "app",
            "--network-alias",
            "web",
            &image,
            "sleep",
            "3600",
        ])
        .expect("podman run a1");
    hosts[1]
        .ok(&[
            "run",
            "-d",
            "--name",
            "b1",
            "--network",
            "app",
            &image,
            "sleep",
            "3600",
        ])
        .expect("podman run b1");
    let a1 = hosts[0]
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.app.IPAddress}}",
            "a1",
        ])
        .unwrap();
    let b1 = hosts[1]
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.app.IPAddress}}",
            "b1",
        ])
        .unwrap();
    assert_eq!(
        local_ip(&c, 0, "a1").as_deref(),
        Some(a1.as_str()),
        "podman and the agent agree"
    );
    assert_eq!(local_ip(&c, 1, "b1").as_deref(), Some(b1.as_str()));

    // By IP, both ways, across hosts.
    hosts[0]
        .ok(&["exec", "a1", "ping", "-c", "3", "-W", "2", &b1])
        .expect("a1 pings b1");
    hosts[1]
        .ok(&["exec", "b1", "ping", "-c", "3", "-W", "2", &a1])
        .expect("b1 pings a1");
    // By name (resolv.conf from the CNI result: the agent's resolver), and by alias.
    let rc = hosts[0]
        .ok(&["exec", "a1", "cat", "/etc/resolv.conf"])
        .unwrap();
    assert!(rc.contains("nameserver 127.0.0.11"), "{rc}");
    let found = hosts[0]
        .ok(&["exec", "a1", "nslookup", "b1"])
        .expect("a1 resolves b1");
    assert!(found.contains(&b1), "{found}");
    let found = hosts[1]
        .ok(&["exec", "b1", "nslookup", "web"])
        .expect("b1 resolves web");
    assert!(found.contains(&a1), "{found}");
    hosts[1]
        .ok(&["exec", "b1", "ping", "-c", "1", "-W", "2", "a1"])
        .expect("b1 pings a1 by name");

    // kill -9 of the agent that attached b1, then a restart: b1 keeps its network (the
    // agent adopts it), and the DEL below reaches the new agent.
    c.kill_agent(1).unwrap();
    c.start_agent(1).unwrap();
    c.wait_members(Duration::from_secs(30)).unwrap();
    assert_eq!(local_ip(&c, 1, "b1").as_deref(), Some(b1.as_str()));
    c.wait_until(
        Duration::from_secs(30),
        "b1 pings a1 after its agent was killed",
        || {
            Ok(hosts[1]
                .ok(&["exec", "b1", "ping", "-c", "1", "-W", "2", &a1])
                .is_ok())
        },
    )
    .unwrap();

    // podman rm -f: CNI DEL from podman's cleanup process; the address is free again and
    // nothing is left behind on the host.
    hosts[1].ok(&["rm", "-f", "-t", "0", "b1"]).unwrap();
    c.wait_until(Duration::from_secs(20), "b1 is detached", || {
        Ok(local_ip(&c, 1, "b1").is_none())
    })
    .unwrap();
    assert_eq!(
        host_links(&c, 1),
        before,
        "no interface left in host 1's namespace"
    );
    hosts[1]
        .ok(&[
            "run",
            "-d",
            "--name",
            "b2",
            "--network",
            "app",
            "--ip",
            &b1,
            &image,
            "sleep",
            "3600",
        ])
        .expect("b1's address is free again");
    assert_eq!(local_ip(&c, 1, "b2").as_deref(), Some(b1.as_str()));
    hosts[0]
        .ok(&["exec", "a1", "ping", "-c", "2", "-W", "2", &b1])
        .expect("a1 pings b2");
    drop(hosts);
    c.wait_until(
        Duration::from_secs(20),
        "every endpoint is detached",
        || Ok(endpoints(&c, 0).is_empty() && endpoints(&c, 1).is_empty()),
    )
    .unwrap();
}

#[test]
fn serial_ctr_containers_on_two_hosts_reach_each_other_through_swarmnet() {
    if let Some(why) = skip_reason(&["containerd", "ctr", "runc", "nsenter", "unshare"]) {
        println!("skipped: {why}");
        return;
    }
    if image::busybox_binary().is_none() {
        println!("skipped: busybox-static is not installed (scripts/install-deps.sh)");
        return;
    }
    let Some(c) = two_hosts("ctr") else { return };
    let dir = work_dir("ctr");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let img = image::build(&dir).expect("busybox image");
    let cni = swarmnet_cni();
    let hosts: Vec<Containerd> = (0..2)
        .map(|i| {
            let h = Containerd::start(
                &c.hosts[i].netns,
                &dir.join(format!("h{i}")),
                i,
                &[("swarmnet-cni", cni.as_path())],
                &[("10-app.conflist", conflist(&socket(&c, i)))],
            )
            .unwrap();
            h.import(&img.oci_tar).expect("ctr import");
            h
        })
        .collect();
    let image = hosts[0].image();
    let before = host_links(&c, 1);
    let run = |h: &Containerd, id: &str| {
        let o = h
            .cni_run(&[
                "run",
                "-d",
                "--cni",
                "--snapshotter",
                "native",
                &image,
                id,
                "sleep",
                "3600",
            ])
            .unwrap();
        assert!(
            o.status.success(),
            "ctr run {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&hosts[0], "c1");
    run(&hosts[1], "c2");
    // ctr's CNI container id is <namespace>-<id>: the endpoint names.
    let c1 = local_ip(&c, 0, "h0-c1").expect("h0-c1 attached");
    let c2 = local_ip(&c, 1, "h1-c2").expect("h1-c2 attached");
    let exec = |h: &Containerd, id: &str, n: usize, cmd: &[&str]| {
        let eid = format!("x{n}");
        let mut args = vec!["tasks", "exec", "--exec-id", &eid, id];
        args.extend_from_slice(cmd);
        h.ok(&args)
    };
    exec(&hosts[0], "c1", 1, &["ping", "-c", "3", "-W", "2", &c2]).expect("c1 pings c2");
    exec(&hosts[1], "c2", 2, &["ping", "-c", "3", "-W", "2", &c1]).expect("c2 pings c1");
    // ctr writes no resolv.conf: ask the agent's resolver in the container directly.
    let found =
        exec(&hosts[0], "c1", 3, &["nslookup", "h1-c2", "127.0.0.11"]).expect("c1 resolves h1-c2");
    assert!(found.contains(&c2), "{found}");

    // A detached container removed without DEL: the agent notices its namespace is gone.
    hosts[1].remove("c2");
    c.wait_until(Duration::from_secs(30), "h1-c2 is collected", || {
        Ok(local_ip(&c, 1, "h1-c2").is_none())
    })
    .unwrap();
    assert_eq!(
        host_links(&c, 1),
        before,
        "no interface left in host 1's namespace"
    );
    // A foreground `ctr run --rm --cni`: ADD, the command, then DEL with an empty CNI_NETNS.
    let o = hosts[1]
        .cni_run(&[
            "run",
            "--rm",
            "--cni",
            "--snapshotter",
            "native",
            &image,
            "c3",
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            &c1,
        ])
        .unwrap();
    assert!(
        o.status.success(),
        "ctr run --rm c3: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(local_ip(&c, 1, "h1-c3").is_none(), "DEL detached c3");
    drop(hosts);
    c.wait_until(
        Duration::from_secs(30),
        "every endpoint is collected",
        || Ok(endpoints(&c, 0).is_empty() && endpoints(&c, 1).is_empty()),
    )
    .unwrap();
}

/// Removes the test's runtime directory (after the runtimes are dropped).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        process::remove_dir(&self.0);
    }
}
