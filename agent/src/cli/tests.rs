use clap::Parser;

use super::*;
use crate::config::DataplaneKind;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("swarmnet").chain(args.iter().copied())).unwrap()
}

#[test]
fn network_create_takes_its_options() {
    let c = parse(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.1.0.0/24",
        "--gateway",
        "10.1.0.254",
        "--vni",
        "42",
        "--mtu",
        "1400",
    ]);
    assert_eq!(
        c.command,
        Command::Network(NetworkCmd::Create {
            name: "blue".into(),
            subnet: Some("10.1.0.0/24".into()),
            gateway: Some("10.1.0.254".into()),
            vni: Some(42),
            mtu: Some(1400),
            encrypted: false,
        })
    );
    assert_eq!(c.client.api, DEFAULT_API);
    assert!(!c.client.json);
}

#[test]
fn client_options_go_before_or_after_the_command() {
    let a = parse(&["--api", "https://h:4243", "--json", "network", "ls"]);
    let b = parse(&["network", "ls", "--json", "--api", "https://h:4243"]);
    assert_eq!(a, b);
    assert!(a.client.json);
    assert_eq!(a.client.api, "https://h:4243");
    let t = parse(&[
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--tls-ca",
        "ca.pem",
        "cluster",
        "status",
    ]);
    assert_eq!(t.client.tls_ca, Some("ca.pem".into()));
    assert_eq!(t.command, Command::Cluster(ClusterCmd::Status));
}

#[test]
fn endpoint_attach_collects_repeated_aliases() {
    let c = parse(&[
        "endpoint",
        "attach",
        "blue",
        "--netns",
        "/var/run/netns/c1",
        "--name",
        "web",
        "--alias",
        "www",
        "--alias",
        "w",
        "--ip",
        "10.0.0.5",
        "--mac",
        "02:42:00:00:00:05",
        "--ifname",
        "eth1",
    ]);
    let Command::Endpoint(EndpointCmd::Attach {
        network,
        netns,
        name,
        aliases,
        ip,
        mac,
        ifname,
        ..
    }) = c.command
    else {
        panic!()
    };
    assert_eq!(
        (network.as_str(), netns.as_str(), name.as_str()),
        ("blue", "/var/run/netns/c1", "web")
    );
    assert_eq!(aliases, ["www", "w"]);
    assert_eq!(ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(mac.as_deref(), Some("02:42:00:00:00:05"));
    assert_eq!(ifname.as_deref(), Some("eth1"));
}

#[test]
fn the_other_commands_parse() {
    assert_eq!(
        parse(&["endpoint", "detach", "web", "--network", "blue"]).command,
        Command::Endpoint(EndpointCmd::Detach {
            endpoint: "web".into(),
            network: Some("blue".into())
        })
    );
    assert_eq!(
        parse(&["endpoint", "ls", "--network", "blue"]).command,
        Command::Endpoint(EndpointCmd::Ls {
            network: Some("blue".into())
        })
    );
    assert_eq!(
        parse(&["network", "rm", "blue"]).command,
        Command::Network(NetworkCmd::Rm {
            network: "blue".into()
        })
    );
    assert_eq!(
        parse(&["network", "inspect", "blue"]).command,
        Command::Network(NetworkCmd::Inspect {
            network: "blue".into()
        })
    );
    assert_eq!(
        parse(&["cluster", "join", "10.0.0.1:7946"]).command,
        Command::Cluster(ClusterCmd::Join {
            seeds: vec!["10.0.0.1:7946".into()]
        })
    );
    assert_eq!(
        parse(&["cluster", "members"]).command,
        Command::Cluster(ClusterCmd::Members)
    );
    assert_eq!(
        parse(&["debug", "dump"]).command,
        Command::Debug(DebugCmd::Dump)
    );
}

#[test]
fn agent_flags_parse_and_repeat() {
    let c = parse(&[
        "agent",
        "--config",
        "/etc/swarmnet.toml",
        "--node-name",
        "h1",
        "--join",
        "a:1",
        "--join",
        "b:2",
        "--gossip-key",
        "00",
        "--dataplane",
        "none",
        "--api-listen",
        "unix:///x.sock",
        "--metrics-addr",
        "9323",
        "--prefix",
        "swa",
    ]);
    let Command::Agent(a) = c.command else {
        panic!()
    };
    assert_eq!(a.join, ["a:1", "b:2"]);
    assert_eq!(a.dataplane, Some(DataplaneKind::None));
    assert_eq!(a.node_name.as_deref(), Some("h1"));
    assert_eq!(a.prefix.as_deref(), Some("swa"));
    assert_eq!(a.api_listen, ["unix:///x.sock"]);
}

#[test]
fn mistakes_are_refused_by_the_parser() {
    let bad = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("swarmnet").chain(args.iter().copied())).is_err()
    };
    assert!(bad(&["network", "create"]));
    assert!(bad(&["network", "create", "x", "--vni", "abc"]));
    assert!(bad(&["endpoint", "attach", "blue", "--name", "x"]));
    assert!(bad(&["cluster", "join"]));
    assert!(bad(&["agent", "--dataplane", "fast"]));
    assert!(bad(&["frobnicate"]));
}

#[test]
fn help_explains_every_command() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
    let help = Cli::command().render_long_help().to_string();
    for word in [
        "agent", "network", "endpoint", "cluster", "debug", "--api", "--json",
    ] {
        assert!(help.contains(word), "{word} missing from --help");
    }
}

#[test]
fn service_create_takes_networks_ports_and_mode() {
    let c = Cli::try_parse_from([
        "swarmnet",
        "service",
        "create",
        "web",
        "--network",
        "blue",
        "--network",
        "red",
        "--port",
        "80:8080/tcp",
        "--port",
        "53/udp",
        "--mode",
        "vip",
    ])
    .unwrap();
    let Command::Service(crate::cli::ServiceCmd::Create {
        name,
        networks,
        mode,
        ports,
        ..
    }) = c.command
    else {
        panic!()
    };
    assert_eq!((name.as_str(), mode.as_str()), ("web", "vip"));
    assert_eq!(networks, ["blue", "red"]);
    let parsed: Vec<_> = ports
        .iter()
        .map(|p| crate::commands::parse_port(p).unwrap())
        .collect();
    assert_eq!((parsed[0].port, parsed[0].target_port), (80, 8080));
    assert_eq!((parsed[1].protocol.as_str(), parsed[1].port), ("udp", 53));
    assert!(crate::commands::parse_port("80/sctp").is_err());
    assert!(crate::commands::parse_port("x:1").is_err());
    assert!(
        Cli::try_parse_from([
            "swarmnet",
            "service",
            "create",
            "web",
            "--mode",
            "rr",
            "--network",
            "b"
        ])
        .is_err()
    );
}

#[test]
fn key_rings_and_encrypted_networks_parse() {
    let c = parse(&[
        "cluster",
        "keys",
        "set",
        "--gossip",
        "1:00112233445566778899aabbccddeeff",
        "--dataplane",
        "7:00112233445566778899aabbccddeeff",
        "--dataplane",
        "8:ffeeddccbbaa99887766554433221100",
    ]);
    let Command::Cluster(ClusterCmd::Keys(KeysCmd::Set { gossip, dataplane })) = c.command else {
        panic!("{:?}", c.command);
    };
    assert_eq!((gossip.len(), dataplane.len()), (1, 2));
    let k = crate::commands::parse_tagged_key("--dataplane", &dataplane[1]).unwrap();
    assert_eq!(k.tag, 8);
    assert_eq!(k.key[0], 0xff);
    let e = crate::commands::parse_tagged_key("--gossip", "x:00").unwrap_err();
    assert!(
        e.to_string()
            .contains("--gossip x: the tag is not a number"),
        "{e}"
    );
    let e = crate::commands::parse_tagged_key("--gossip", "1:0g").unwrap_err();
    assert!(e.to_string().contains("the key is not hex"), "{e}");
    let c = parse(&["network", "create", "s", "--encrypted"]);
    assert!(matches!(
        c.command,
        Command::Network(NetworkCmd::Create {
            encrypted: true,
            ..
        })
    ));
    let c = parse(&["cluster", "keys", "generate", "--bytes", "32"]);
    assert_eq!(
        c.command,
        Command::Cluster(ClusterCmd::Keys(KeysCmd::Generate { bytes: 32 }))
    );
    assert_eq!(crate::commands::generate_key(32).len(), 64);
}
