//! Conformance of `swarmnet-cni` against a real agent in a lab host: every command (VERSION,
//! ADD, CHECK, DEL), retries (ADD twice, DEL twice, DEL without a namespace, DEL after the
//! container's namespace is gone, DEL after an agent restart), chaining (prevResult passed
//! through), and every failure with the spec's error JSON and code: bad configurations,
//! missing environment, a missing namespace, an unknown network, the agent down, a CHECK
//! that finds a difference; nothing half-made after a failure.
//!
//! Needs root and the lab tools; otherwise it prints "skipped: <reason>". Named `serial_*`:
//! nextest runs it alone.

use cluster_tests::cni::{CniEnv, call};
use cluster_tests::harness::cluster_with;
use serde_json::{Value, json};

fn conf(socket: &str, extra: Value) -> String {
    let mut v = json!({
        "cniVersion": "1.0.0",
        "name": "app",
        "type": "swarmnet-cni",
        "agentSocket": socket,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v.to_string()
}

fn env(id: &str, netns: &std::path::Path) -> CniEnv {
    CniEnv {
        container_id: id.into(),
        netns: netns.display().to_string(),
        ifname: "eth0".into(),
        args: format!("IgnoreUnknown=1;K8S_POD_NAME={id}"),
    }
}

#[test]
fn serial_the_cni_plugin_passes_its_conformance_checks() {
    let Some(mut c) = cluster_with("cniconf", |o| o.hosts = 1) else {
        return;
    };
    let socket = c.hosts[0].api.trim_start_matches("unix://").to_string();
    c.create_network(0, "app", &["--subnet", "10.61.0.0/24"])
        .expect("network");
    let ns1 = c.lab.add_container(0, "c1").unwrap();
    let good = conf(&socket, json!({}));

    // VERSION.
    let v = call("VERSION", &CniEnv::default(), r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(v.code, 0, "{v:?}");
    let out = v.out.unwrap();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert!(
        out["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0"))
    );

    // ADD: the result, and the interface in the container.
    let add = call("ADD", &env("c1", &ns1), &good);
    assert_eq!(add.code, 0, "{add:?}");
    let r = add.out.clone().unwrap();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["interfaces"][0]["sandbox"], ns1.display().to_string());
    let mac = r["interfaces"][0]["mac"].as_str().unwrap().to_string();
    let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.61.0.") && addr.ends_with("/24"), "{r}");
    assert_eq!(r["ips"][0]["gateway"], "10.61.0.1");
    assert_eq!(r["ips"][0]["interface"], 0);
    assert_eq!(r["routes"][0]["dst"], "10.61.0.0/24");
    assert_eq!(r["dns"]["nameservers"], json!(["127.0.0.11"]));
    let shown = c
        .lab
        .exec_ok(&ns1, &["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(shown.contains(&addr), "{shown}");
    let link = c
        .lab
        .exec_ok(&ns1, &["ip", "-o", "link", "show", "dev", "eth0"])
        .unwrap();
    assert!(link.contains(&mac), "{link}");

    // ADD again (a runtime's retry): the same attachment.
    let again = call("ADD", &env("c1", &ns1), &good);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.out, add.out);

    // CHECK with the result; CHECK with a different MAC in prevResult.
    let with_prev = |prev: &Value| conf(&socket, json!({ "prevResult": prev }));
    let chk = call("CHECK", &env("c1", &ns1), &with_prev(&r));
    assert_eq!(chk.code, 0, "{chk:?}");
    let mut wrong = r.clone();
    wrong["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    let chk = call("CHECK", &env("c1", &ns1), &with_prev(&wrong));
    assert_eq!(chk.error_code(), Some(101), "{chk:?}");
    assert!(chk.msg().contains("MAC"), "{chk:?}");
    let chk = call("CHECK", &env("nobody", &ns1), &good);
    assert_eq!(chk.error_code(), Some(3), "{chk:?}");

    // Chained after another plugin: its result is passed through, ours appended.
    let ns2 = c.lab.add_container(0, "c2").unwrap();
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo0", "sandbox": ns2.display().to_string()}],
        "ips": [{"address": "192.0.2.7/32", "interface": 0}],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let chained = call("ADD", &env("c2", &ns2), &with_prev(&prev));
    assert_eq!(chained.code, 0, "{chained:?}");
    let cr = chained.out.unwrap();
    assert_eq!(cr["interfaces"][0]["name"], "lo0");
    assert_eq!(cr["interfaces"][1]["name"], "eth0");
    assert_eq!(cr["ips"][0]["address"], "192.0.2.7/32");
    assert_eq!(cr["ips"][1]["interface"], 1);
    assert_eq!(
        cr["dns"]["nameservers"],
        json!(["127.0.0.11", "192.0.2.53"])
    );

    // Failures: the spec's codes, nothing made.
    let ns3 = c.lab.add_container(0, "c3").unwrap();
    let cases: Vec<(&str, CniEnv, String, u64, &str)> = vec![
        ("ADD", env("c3", &ns3), "{not json".into(), 6, "not JSON"),
        (
            "ADD",
            env("c3", &ns3),
            r#"{"cniVersion":"0.1.0","name":"app"}"#.into(),
            1,
            "cniVersion",
        ),
        (
            "ADD",
            env("c3", &ns3),
            r#"{"cniVersion":"1.0.0"}"#.into(),
            7,
            "name: required",
        ),
        (
            "ADD",
            env("c3", &ns3),
            conf(&socket, json!({"network": "nope"})),
            7,
            "network nope not found",
        ),
        (
            "ADD",
            env("c3", &ns3),
            conf(&socket, json!({"ip": "10.99.0.5"})),
            7,
            "outside",
        ),
        (
            "ADD",
            env("c3", std::path::Path::new("/proc/999999999/ns/net")),
            good.clone(),
            3,
            "does not exist",
        ),
        (
            "ADD",
            CniEnv {
                container_id: String::new(),
                ..env("c3", &ns3)
            },
            good.clone(),
            4,
            "CNI_CONTAINERID",
        ),
        (
            "ADD",
            CniEnv {
                netns: String::new(),
                ..env("c3", &ns3)
            },
            good.clone(),
            4,
            "CNI_NETNS",
        ),
        (
            "ADD",
            env("c3", &ns3),
            conf("/nonexistent/api.sock", json!({})),
            11,
            "cannot reach the swarmnet agent",
        ),
        ("GC", env("c3", &ns3), good.clone(), 4, "CNI_COMMAND"),
    ];
    for (cmd, e, stdin, code, text) in cases {
        let got = call(cmd, &e, &stdin);
        assert_eq!(got.error_code(), Some(code), "{cmd} {stdin}: {got:?}");
        assert!(
            got.msg().contains(text),
            "{cmd} {stdin}: {:?} lacks {text:?}",
            got.msg()
        );
        let o = got.out.as_ref().unwrap();
        assert!(o.get("cniVersion").is_some(), "{o}");
    }
    let links = c.lab.exec_ok(&ns3, &["ip", "-o", "link"]).unwrap();
    assert_eq!(
        links.lines().count(),
        1,
        "only lo after the failures: {links}"
    );

    // The agent down: ADD is refused cleanly (and makes nothing); DEL after the restart
    // finds the attachment by its client id.
    c.stop_agent(0).unwrap();
    let down = call("ADD", &env("c3", &ns3), &good);
    assert_eq!(down.error_code(), Some(11), "{down:?}");
    let links = c.lab.exec_ok(&ns3, &["ip", "-o", "link"]).unwrap();
    assert_eq!(
        links.lines().count(),
        1,
        "only lo with the agent down: {links}"
    );
    c.start_agent(0).unwrap();
    let del = call("DEL", &env("c1", &ns1), &with_prev(&r));
    assert_eq!(del.code, 0, "{del:?}");
    let links = c.lab.exec_ok(&ns1, &["ip", "-o", "link"]).unwrap();
    assert!(
        !links.contains("eth0"),
        "DEL removed the interface: {links}"
    );
    // DEL twice, and DEL without a namespace (ctr run --rm sends an empty CNI_NETNS).
    assert_eq!(call("DEL", &env("c1", &ns1), &good).code, 0);
    let no_ns = CniEnv {
        netns: String::new(),
        ..env("c1", &ns1)
    };
    assert_eq!(call("DEL", &no_ns, &good).code, 0);

    // DEL after the container's namespace is gone.
    let add3 = call("ADD", &env("c3", &ns3), &good);
    assert_eq!(add3.code, 0, "{add3:?}");
    let name = ns3.file_name().unwrap().to_str().unwrap().to_string();
    c.lab
        .exec_ok(&c.lab.host_netns(0), &["ip", "netns", "delete", &name])
        .unwrap();
    let del3 = call("DEL", &env("c3", &ns3), &good);
    assert_eq!(del3.code, 0, "{del3:?}");
    assert_eq!(call("DEL", &env("c2", &ns2), &good).code, 0);
    let left = c.cli_json(0, &["endpoint", "ls"]).unwrap();
    assert_eq!(left, json!([]), "every attachment is gone");
}
