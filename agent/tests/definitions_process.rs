//! Networks and services outlive the agent that created them: real `swarmnet agent`
//! processes on loopback (`--dataplane none`), killed, reaped, deleted around, and restarted
//! in every order, with one of them never coming back.
//!
//! The kernel side of the same promise (DNS, VIP balancing and attach while the creator is
//! down) is `cluster-tests/tests/durability.rs`.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{AgentProc, eventually, free_port};
use proto::pb;
use proto::pb::cluster_client::ClusterClient;
use proto::pb::networks_client::NetworksClient;
use proto::pb::services_client::ServicesClient;
use tonic::transport::Channel;

/// foca's failure detection is ~3 s; what must hold while a creator is down is watched for
/// three times that.
const DOWN_WATCH: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);

/// name -> id of what an agent lists.
type Listing = BTreeMap<String, String>;

async fn networks(ch: &Channel) -> Option<Listing> {
    let l = NetworksClient::new(ch.clone())
        .list(pb::ListNetworksRequest {})
        .await
        .ok()?
        .into_inner();
    Some(l.networks.into_iter().map(|n| (n.name, n.id)).collect())
}

async fn services(ch: &Channel) -> Option<Listing> {
    let l = ServicesClient::new(ch.clone())
        .list(pb::ListServicesRequest {})
        .await
        .ok()?
        .into_inner();
    // A duplicate name would collapse here: count them too.
    let n = l.services.len();
    let m: Listing = l.services.into_iter().map(|s| (s.name, s.id)).collect();
    (m.len() == n).then_some(m)
}

/// Wait until `agent` lists exactly these networks and services.
async fn wait_listing(agent: &AgentProc, nets: &Listing, svcs: &Listing, what: &str) {
    let ch = agent.channel().await.expect("api");
    let got = eventually(WAIT, || {
        let ch = ch.clone();
        async move {
            let (n, s) = (networks(&ch).await?, services(&ch).await?);
            (n == *nets && s == *svcs).then_some(())
        }
    })
    .await;
    if got.is_none() {
        panic!(
            "{what}: {} lists networks {:?} and services {:?}, expected {nets:?} and {svcs:?}; log:\n{}",
            agent.gossip,
            networks(&ch).await,
            services(&ch).await,
            agent.log_text()
        );
    }
}

/// Three agents on fixed loopback addresses and ports; each joins the other two.
struct Trio {
    ips: [Ipv4Addr; 3],
    ports: [u16; 3],
    dirs: Vec<Option<tempfile::TempDir>>,
    procs: Vec<Option<AgentProc>>,
    extra: Vec<String>,
}

impl Trio {
    fn new(first_octet: u8, extra: &[&str]) -> Trio {
        let ips = [0, 1, 2].map(|i| Ipv4Addr::new(127, 0, 0, first_octet + i));
        let ports = ips.map(free_port);
        Trio {
            ips,
            ports,
            dirs: (0..3).map(|_| Some(tempfile::tempdir().unwrap())).collect(),
            procs: (0..3).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    async fn start(&mut self, i: usize) {
        let mut args = vec!["--node-name".to_string(), format!("n{i}")];
        for j in (0..3).filter(|j| *j != i) {
            args.push("--join".into());
            args.push(format!("{}:{}", self.ips[j], self.ports[j]));
        }
        args.extend(self.extra.iter().cloned());
        let dir = self.dirs[i].take().expect("not running");
        self.procs[i] =
            Some(AgentProc::start_in(dir, self.ips[i], Some(self.ports[i]), &args).await);
    }

    fn take_dir(&mut self, i: usize) {
        let mut p = self.procs[i].take().expect("running");
        self.dirs[i] = Some(std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap()));
    }

    fn kill9(&mut self, i: usize) {
        self.procs[i].as_mut().expect("running").kill9();
        self.take_dir(i);
    }

    fn stop(&mut self, i: usize) {
        let st = self.procs[i].as_mut().expect("running").terminate();
        assert!(st.success(), "n{i} stopped with {st:?}");
        self.take_dir(i);
    }

    fn get(&self, i: usize) -> &AgentProc {
        self.procs[i].as_ref().expect("running")
    }

    async fn ch(&self, i: usize) -> Channel {
        self.get(i).channel().await.expect("api")
    }

    async fn wait_members(&self, live: &[usize]) {
        for &i in live {
            let ch = self.ch(i).await;
            let want = live.len();
            eventually(WAIT, || {
                let ch = ch.clone();
                async move {
                    let m = ClusterClient::new(ch)
                        .members(pb::MembersRequest {})
                        .await
                        .ok()?
                        .into_inner()
                        .members;
                    (m.iter().filter(|m| m.up).count() == want).then_some(())
                }
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "n{i} never saw {want} members up:\n{}",
                    self.get(i).log_text()
                )
            });
        }
    }
}

async fn create_network(ch: &Channel, name: &str) -> String {
    NetworksClient::new(ch.clone())
        .create(pb::CreateNetworkRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create network {name}: {e}"))
        .into_inner()
        .id
}

async fn create_service(ch: &Channel, name: &str, network: &str, mode: &str) -> pb::Service {
    ServicesClient::new(ch.clone())
        .create(pb::CreateServiceRequest {
            name: name.into(),
            networks: vec![network.into()],
            mode: mode.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create service {name}: {e}"))
        .into_inner()
}

#[tokio::test]
async fn definitions_survive_their_creators_death_deletes_hold_and_every_restart_order_brings_them_back()
 {
    let mut t = Trio::new(31, &[]);
    for i in 0..3 {
        t.start(i).await;
    }
    t.wait_members(&[0, 1, 2]).await;
    let (c0, c1, c2) = (t.ch(0).await, t.ch(1).await, t.ch(2).await);
    let blue = create_network(&c1, "blue").await;
    let red = create_network(&c2, "red").await;
    let api = create_service(&c2, "api", "blue", "vip").await;
    let tmp = create_service(&c2, "tmp", "red", "vip").await;
    let db = create_service(&c0, "db", "red", "dnsrr").await;
    let mut nets: Listing = [("blue".into(), blue.clone()), ("red".into(), red.clone())].into();
    let mut svcs: Listing = [
        ("api".into(), api.id.clone()),
        ("tmp".into(), tmp.id.clone()),
        ("db".into(), db.id.clone()),
    ]
    .into();
    for i in 0..3 {
        wait_listing(t.get(i), &nets, &svcs, "after the creates").await;
    }

    // The creator of red, api and tmp dies: for three failure-detection times, the others
    // keep listing everything, and name it while it is down.
    t.kill9(2);
    let until = Instant::now() + DOWN_WATCH;
    while Instant::now() < until {
        for (i, ch) in [(0, &c0), (1, &c1)] {
            assert_eq!(
                networks(ch).await.as_ref(),
                Some(&nets),
                "n{i} while n2 is down"
            );
            assert_eq!(
                services(ch).await.as_ref(),
                Some(&svcs),
                "n{i} while n2 is down"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let members = ClusterClient::new(c0.clone())
        .members(pb::MembersRequest {})
        .await
        .unwrap()
        .into_inner()
        .members;
    let down: Vec<&pb::Member> = members.iter().filter(|m| !m.up).collect();
    assert_eq!(down.len(), 1, "{members:?}");
    assert_eq!(down[0].name, "n2", "a down node is named from its record");

    // Deletes through the others while the creator is down; it comes back with its saved
    // (older) definitions: the deletes hold, nothing is duplicated.
    ServicesClient::new(c1.clone())
        .delete(pb::DeleteServiceRequest {
            service: "tmp".into(),
        })
        .await
        .unwrap();
    ServicesClient::new(c0.clone())
        .delete(pb::DeleteServiceRequest {
            service: "db".into(),
        })
        .await
        .unwrap();
    NetworksClient::new(c0.clone())
        .delete(pb::DeleteNetworkRequest {
            network: "red".into(),
        })
        .await
        .unwrap();
    nets.remove("red");
    svcs.remove("tmp");
    svcs.remove("db");
    t.start(2).await;
    t.wait_members(&[0, 1, 2]).await;
    for i in 0..3 {
        wait_listing(t.get(i), &nets, &svcs, "after the creator came back").await;
    }
    // The VIP of the deleted service was released by its creator.
    let c2 = t.ch(2).await;
    let released = eventually(WAIT, || {
        let out = t.get(2).cli(&["debug", "dump"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let tmp = tmp.id.clone();
        async move {
            let dump: serde_json::Value = serde_json::from_str(&text).ok()?;
            let held = dump["local_state"]["services"].as_object()?;
            (!held.contains_key(&tmp)).then_some(())
        }
    })
    .await;
    assert!(
        released.is_some(),
        "n2 still holds the VIP of the deleted service"
    );
    let api_now = ServicesClient::new(c2.clone())
        .inspect(pb::InspectServiceRequest {
            service: "api".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api_now.vips, api.vips, "the VIP did not change");

    // Every agent stops; they come back in every order.
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (round, order) in orders.iter().enumerate() {
        for i in 0..3 {
            if round % 2 == 0 {
                t.stop(i);
            } else {
                t.kill9(i);
            }
        }
        for &i in order {
            t.start(i).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        t.wait_members(&[0, 1, 2]).await;
        for i in 0..3 {
            wait_listing(t.get(i), &nets, &svcs, &format!("restart order {order:?}")).await;
        }
    }
    // ... and with one of them never coming back.
    for gone in 0..3 {
        for i in 0..3 {
            t.kill9(i);
        }
        let back: Vec<usize> = (0..3).filter(|i| *i != gone).collect();
        for &i in back.iter().rev() {
            t.start(i).await;
        }
        t.wait_members(&back).await;
        for &i in &back {
            wait_listing(t.get(i), &nets, &svcs, &format!("restart without n{gone}")).await;
        }
        t.start(gone).await;
    }
}

#[tokio::test]
async fn definitions_of_a_creator_that_was_reaped_stay_and_are_not_duplicated_when_it_returns() {
    let mut t = Trio::new(41, &["--node-reap-secs", "5"]);
    for i in 0..3 {
        t.start(i).await;
    }
    t.wait_members(&[0, 1, 2]).await;
    let c2 = t.ch(2).await;
    let blue = create_network(&c2, "blue").await;
    let api = create_service(&c2, "api", "blue", "vip").await;
    let nets: Listing = [("blue".into(), blue)].into();
    let svcs: Listing = [("api".into(), api.id.clone())].into();
    for i in 0..3 {
        wait_listing(t.get(i), &nets, &svcs, "after the creates").await;
    }
    t.kill9(2);
    // Detection (~3 s) plus node_reap (5 s) plus reap timer slack.
    let reaped = eventually(WAIT, || {
        let out = t.get(0).cli(&["debug", "dump"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        async move {
            let dump: serde_json::Value = serde_json::from_str(&text).ok()?;
            (dump["stats"]["core"]["nodes_reaped"].as_u64()? > 0).then_some(())
        }
    })
    .await;
    assert!(
        reaped.is_some(),
        "n2 was never reaped on n0:\n{}",
        t.get(0).log_text()
    );
    for i in 0..2 {
        wait_listing(t.get(i), &nets, &svcs, "after the creator was reaped").await;
    }
    t.start(2).await;
    t.wait_members(&[0, 1, 2]).await;
    for i in 0..3 {
        wait_listing(t.get(i), &nets, &svcs, "after the reaped creator came back").await;
    }
    let api_now = ServicesClient::new(t.ch(0).await)
        .inspect(pb::InspectServiceRequest {
            service: "api".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(api_now.vips, api.vips);
}
