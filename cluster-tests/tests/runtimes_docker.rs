//! dockerd 20.10 with swarmnet's network and IPAM plugin (served by the agent,
//! `--docker-plugin`) on a two-host lab cluster, one dockerd per host namespace:
//! `docker network create -d swarmnet --ipam-driver swarmnet -o swarmnet.network=app app` on
//! both hosts, `docker run --network app` on each, ping across hosts, names of containers on
//! the other host through Docker's own resolver (forwarding to the agent on the network's
//! gateway), `docker network connect/disconnect`, `docker rm -f`, and a `--restart=always`
//! container that comes back after the agent restarts, after dockerd restarts, and after
//! both restart.
//!
//! Needs root, docker.io (dockerd 20.10, /usr/bin/docker), runc, iptables and
//! busybox-static (scripts/install-deps.sh); otherwise it prints "skipped: <reason>".
//! Named `serial_*`: nextest runs it alone.

use std::path::PathBuf;
use std::time::Duration;

use cluster_tests::harness::cluster_with;
use cluster_tests::runtimes::docker::{CLI, Dockerd};
use cluster_tests::runtimes::{image, process, skip_reason, work_dir};
use lab::testbed::AgentCluster;
use serde_json::json;

const GATEWAY: &str = "10.63.0.1";

fn endpoints(c: &AgentCluster, i: usize) -> Vec<(String, String)> {
    let v = c
        .cli_json(i, &["endpoint", "ls", "--network", "app"])
        .unwrap_or(json!([]));
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["local"].as_bool() == Some(true))
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
            )
        })
        .collect()
}

fn ip_of(d: &Dockerd, name: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.app.IPAddress}}",
        name,
    ])
    .unwrap_or_default()
}

/// Polls `f` (every 100 ms, at most `secs`) until it returns true.
fn eventually(c: &AgentCluster, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    c.wait_until(Duration::from_secs(secs), what, || Ok(f()))
        .unwrap();
}

fn pings(d: &Dockerd, from: &str, to: &str) -> bool {
    d.run(&["exec", from, "ping", "-c", "2", "-W", "2", to])
        .is_ok_and(|o| o.status.success())
}

fn resolves(d: &Dockerd, from: &str, name: &str, ip: &str) -> bool {
    d.run(&["exec", from, "nslookup", name])
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(ip))
}

#[test]
fn serial_docker_containers_on_two_hosts_use_swarmnet_through_the_plugin() {
    if let Some(why) = skip_reason(&["dockerd", "runc", "iptables", "nsenter", "unshare"]) {
        println!("skipped: {why}");
        return;
    }
    if !std::path::Path::new(CLI).is_file() || !std::path::Path::new("/etc/docker").is_dir() {
        println!("skipped: docker.io is not installed (scripts/install-deps.sh)");
        return;
    }
    if image::busybox_binary().is_none() {
        println!("skipped: busybox-static is not installed (scripts/install-deps.sh)");
        return;
    }
    let dir = work_dir("docker");
    let host_dir = |i: usize| dir.join(format!("h{i}"));
    let plugin = |i: usize| host_dir(i).join("plugin/swarmnet.sock");
    for i in 0..2 {
        std::fs::create_dir_all(host_dir(i)).unwrap();
    }
    let Some(mut c) = cluster_with("docker", |o| {
        o.hosts = 2;
        o.reconcile_interval_secs = Some(2);
        o.host_args = (0..2)
            .map(|i| {
                vec![
                    "--docker-plugin".to_string(),
                    plugin(i).display().to_string(),
                    "--docker-api".to_string(),
                    format!("unix://{}", Dockerd::socket_in(&host_dir(i)).display()),
                ]
            })
            .collect();
    }) else {
        process::remove_dir(&dir);
        return;
    };
    let _cleanup = Cleanup(dir.clone());
    c.create_network(0, "app", &["--subnet", "10.63.0.0/24"])
        .expect("network app");
    let img = image::build(&dir).expect("busybox image");
    let mut hosts: Vec<Dockerd> = (0..2)
        .map(|i| {
            let d = Dockerd::start(&c.hosts[i].netns, &host_dir(i), i, &plugin(i))
                .expect("dockerd starts");
            d.import(&img.rootfs_tar).expect("docker import");
            d
        })
        .collect();
    for d in &hosts {
        d.ok(&[
            "network",
            "create",
            "-d",
            "swarmnet",
            "--ipam-driver",
            "swarmnet",
            "-o",
            "swarmnet.network=app",
            "app",
        ])
        .expect("docker network create");
    }
    let run = |d: &Dockerd, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--dns", GATEWAY];
        args.extend_from_slice(extra);
        args.extend([image::NAME, "sleep", "3600"]);
        d.ok(&args).expect("docker run")
    };
    run(
        &hosts[0],
        &["--name", "d1", "--network", "app", "--network-alias", "web"],
    );
    run(
        &hosts[1],
        &["--name", "d2", "--network", "app", "--restart=always"],
    );
    let d1 = ip_of(&hosts[0], "d1");
    let d2 = ip_of(&hosts[1], "d2");
    assert!(
        d1.starts_with("10.63.0.") && d2.starts_with("10.63.0."),
        "{d1} {d2}"
    );
    assert_ne!(d1, d2, "addresses never collide across hosts");

    // By IP across hosts, both ways.
    assert!(pings(&hosts[0], "d1", &d2), "d1 pings d2");
    assert!(pings(&hosts[1], "d2", &d1), "d2 pings d1");
    // By name, through Docker's resolver (127.0.0.11) forwarding to the agent on the
    // gateway: the endpoints are renamed after their containers once dockerd shows them.
    let rc = hosts[0]
        .ok(&["exec", "d1", "cat", "/etc/resolv.conf"])
        .unwrap();
    assert!(rc.contains("nameserver 127.0.0.11"), "{rc}");
    eventually(&c, 30, "d1 resolves d2 (other host)", || {
        resolves(&hosts[0], "d1", "d2", &d2)
    });
    eventually(&c, 30, "d2 resolves web (d1's alias)", || {
        resolves(&hosts[1], "d2", "web", &d1)
    });
    assert!(
        endpoints(&c, 0)
            .iter()
            .any(|(n, ip)| n == "d1" && *ip == d1)
    );

    // docker network connect / disconnect.
    hosts[0]
        .ok(&["run", "-d", "--name", "d3", image::NAME, "sleep", "3600"])
        .unwrap();
    hosts[0]
        .ok(&["network", "connect", "--alias", "api", "app", "d3"])
        .expect("network connect");
    let d3 = ip_of(&hosts[0], "d3");
    assert!(pings(&hosts[1], "d2", &d3), "d2 pings d3 after connect");
    eventually(&c, 30, "d2 resolves api (d3's alias)", || {
        resolves(&hosts[1], "d2", "api", &d3)
    });
    hosts[0]
        .ok(&["network", "disconnect", "app", "d3"])
        .unwrap();
    eventually(&c, 20, "d3 detached", || {
        !endpoints(&c, 0).iter().any(|(_, ip)| *ip == d3)
    });
    assert!(!pings(&hosts[1], "d2", &d3), "d3 is gone from app");

    // The agent is killed (kill -9) and restarts: containers keep their network.
    c.kill_agent(1).unwrap();
    c.start_agent(1).unwrap();
    c.wait_members(Duration::from_secs(30)).unwrap();
    assert!(
        pings(&hosts[1], "d2", &d1),
        "d2 pings d1 after the agent restarted"
    );

    // dockerd restarts: the --restart=always container comes back on app.
    hosts[1].stop_daemon();
    eventually(&c, 30, "d2 detached when dockerd stopped", || {
        !endpoints(&c, 1).iter().any(|(n, _)| n == "d2")
    });
    hosts[1].start_daemon().expect("dockerd restarts");
    eventually(&c, 60, "d2 back after dockerd restarted", || {
        pings(&hosts[1], "d2", &d1)
    });
    // Both restart: dockerd down, agent down, agent up, dockerd up.
    hosts[1].stop_daemon();
    c.stop_agent(1).unwrap();
    c.start_agent(1).unwrap();
    c.wait_members(Duration::from_secs(30)).unwrap();
    hosts[1].start_daemon().expect("dockerd restarts");
    eventually(&c, 60, "d2 back after both restarted", || {
        pings(&hosts[1], "d2", &d1)
    });
    let d2_now = ip_of(&hosts[1], "d2");
    eventually(&c, 30, "d1 resolves d2 after the restarts", || {
        resolves(&hosts[0], "d1", "d2", &d2_now)
    });

    // docker rm -f: detached, the address free again.
    hosts[0].ok(&["rm", "-f", "d1"]).unwrap();
    eventually(&c, 20, "d1 detached", || {
        !endpoints(&c, 0).iter().any(|(n, _)| n == "d1")
    });
    // (Docker refuses --ip on a network created without --subnet: ask the agent directly.)
    let probe = c
        .attach_with(0, "app", "probe", &["--ip", &d1])
        .expect("d1's address is free again");
    assert!(
        pings(&hosts[1], "d2", &d1),
        "d2 pings the new holder of d1's old address"
    );
    c.detach(&probe).unwrap();

    for d in &hosts {
        d.remove_all();
    }
    eventually(&c, 30, "every endpoint is detached", || {
        endpoints(&c, 0).is_empty() && endpoints(&c, 1).is_empty()
    });
    for i in 0..2 {
        let dump = c.cli_json(i, &["debug", "dump"]).unwrap();
        let local = &dump["local_state"];
        for key in ["reservations", "pinned_networks"] {
            assert!(
                local[key].as_object().is_none_or(|o| o.is_empty()),
                "host {i}: {key} left after the Docker networks went: {local}"
            );
        }
    }
    for d in hosts.iter_mut() {
        d.stop_daemon();
    }
}

/// Removes the test's runtime directory (after the runtimes are dropped).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        process::remove_dir(&self.0);
    }
}
