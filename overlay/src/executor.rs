//! The executor: reads the kernel's state and applies [`Op`]s over netlink, on a dedicated
//! thread that enters namespaces with `setns(2)`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use ipnetwork::Ipv4Network;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan};
use tokio::sync::{mpsc, oneshot};

use crate::actual::{
    Actual, Bridge, ContainerIface, FdbEntry, NeighbourEntry, Sandbox, Veth, Vxlan,
};
use crate::names::{BRIDGE_NAME, VXLAN_NAME};
use crate::netlink::{self, EADDRNOTAVAIL, ENODEV, ENOENT, is_errno};
use crate::netns::{self, THREAD_SELF_NS};
use crate::{Desired, Error, LocalEndpoint, Names, Op, OpFailure, Report, plan};

/// Applies the overlay dataplane for one agent (one [`Names`] prefix) acting as one host.
///
/// All kernel work happens on a dedicated OS thread owned by the executor. That thread lives
/// in the *host namespace* given at construction (the namespace whose routing carries VXLAN
/// traffic; the VXLAN devices' UDP sockets are created there) and enters sandbox and
/// container namespaces only around netlink socket creation, so the calling process and its
/// other threads (e.g. tokio workers) never change namespace. Calls are serialised on that
/// thread; the executor is `Send + Sync` and may be shared (e.g. in an `Arc`).
///
/// Netlink sockets are opened per call and closed at its end, so the executor never keeps a
/// sandbox or container namespace alive between calls. The host namespace is held for the
/// executor's lifetime.
///
/// Dropping the executor waits for the call in progress (if any) to finish and stops the
/// thread; kernel objects stay (a new executor with the same names adopts them).
#[derive(Debug)]
pub struct Executor {
    names: Names,
    local_vtep: Ipv4Addr,
    tx: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

enum Job {
    ReadActual(Desired, oneshot::Sender<Result<Actual, Error>>),
    Apply(Vec<Op>, oneshot::Sender<Report>),
    Reconcile(Desired, oneshot::Sender<Result<Report, Error>>),
}

impl Executor {
    /// An executor whose host namespace is the calling thread's current network namespace.
    ///
    /// `local_vtep` is this node's data-path address: the `local` of every VXLAN device it
    /// creates (`0.0.0.0` leaves the source to the host's routing) and the VTEP whose peers it
    /// ignores. Fails if the prefix is invalid or the thread cannot start.
    pub fn new(names: Names, local_vtep: Ipv4Addr) -> Result<Self, Error> {
        let home = netns::open(Path::new(THREAD_SELF_NS))?;
        Self::spawn(home, THREAD_SELF_NS.into(), names, local_vtep)
    }

    /// An executor acting as the host whose network namespace is `host_netns` (e.g.
    /// `/var/run/netns/h1`): VXLAN devices are created there, so their traffic uses that
    /// namespace's underlay. Several executors with different prefixes and host namespaces
    /// can run in one process without interfering.
    pub fn new_in(
        host_netns: impl AsRef<Path>,
        names: Names,
        local_vtep: Ipv4Addr,
    ) -> Result<Self, Error> {
        let path = host_netns.as_ref();
        let home = netns::open(path)?;
        Self::spawn(home, path.to_path_buf(), names, local_vtep)
    }

    fn spawn(
        home: File,
        home_path: PathBuf,
        names: Names,
        local_vtep: Ipv4Addr,
    ) -> Result<Self, Error> {
        names.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let worker_names = names.clone();
        let thread = std::thread::Builder::new()
            .name(format!("overlay-{}", names.prefix))
            .spawn(move || {
                let setup = netns::enter(&home, &home_path).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Error::io("start runtime of", "overlay executor", e))
                });
                match setup {
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        let worker = Worker {
                            names: worker_names,
                            local_vtep,
                            home,
                            home_path,
                            conns: BTreeMap::new(),
                            broken: None,
                        };
                        rt.block_on(worker.run(rx));
                    }
                }
            })
            .map_err(|e| Error::io("spawn thread of", "overlay executor", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Executor {
                names,
                local_vtep,
                tx: Some(tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(Error::ExecutorGone("the thread died while starting".into())),
        }
    }

    /// The naming scheme.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The data-path address given at construction.
    pub fn local_vtep(&self) -> Ipv4Addr {
        self.local_vtep
    }

    /// Reads the kernel state of this prefix: every sandbox `<prefix>-<vni>` with its bridge,
    /// VXLAN device, veths, `vxlan0` FDB and neighbour entries; for each endpoint of
    /// `desired` whose veth exists, its container interface (read from the endpoint's
    /// namespace and `ifname`). Errors only when a sandbox exists but cannot be read.
    pub async fn read_actual(&self, desired: &Desired) -> Result<Actual, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::ReadActual(desired.clone(), tx))?;
        rx.await.map_err(|_| gone())?
    }

    /// Applies `ops` in order. Each op is attempted even when an earlier one failed;
    /// failures are listed in the report.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Report, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Apply(ops, tx))?;
        rx.await.map_err(|_| gone())
    }

    /// The reconcile loop body: validate `desired`, [`read_actual`](Self::read_actual),
    /// [`plan`], [`apply`](Self::apply).
    ///
    /// Contract: idempotent (when it succeeds without failures, an immediate second call
    /// attempts zero ops); `Err` only when nothing was applied (invalid desired state,
    /// unreadable state, executor gone); individual op failures are in
    /// [`Report::failed`] and are retried by the next call. Call it on every desired-state
    /// change and periodically, to repair drift.
    pub async fn reconcile(&self, desired: &Desired) -> Result<Report, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Reconcile(desired.clone(), tx))?;
        rx.await.map_err(|_| gone())?
    }

    /// [`read_actual`](Self::read_actual) for synchronous callers. Must not be called from
    /// inside an async runtime (it blocks the calling thread).
    pub fn read_actual_blocking(&self, desired: &Desired) -> Result<Actual, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::ReadActual(desired.clone(), tx))?;
        rx.blocking_recv().map_err(|_| gone())?
    }

    /// [`apply`](Self::apply) for synchronous callers (same restriction as
    /// [`read_actual_blocking`](Self::read_actual_blocking)).
    pub fn apply_blocking(&self, ops: Vec<Op>) -> Result<Report, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Apply(ops, tx))?;
        rx.blocking_recv().map_err(|_| gone())
    }

    /// [`reconcile`](Self::reconcile) for synchronous callers (same restriction as
    /// [`read_actual_blocking`](Self::read_actual_blocking)).
    pub fn reconcile_blocking(&self, desired: &Desired) -> Result<Report, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Reconcile(desired.clone(), tx))?;
        rx.blocking_recv().map_err(|_| gone())?
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| gone()),
            None => Err(gone()),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gone() -> Error {
    Error::ExecutorGone("it stopped or panicked".into())
}

/// A netlink connection bound to one namespace; closed (task aborted) on drop.
struct Conn {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Opens a socket in the calling thread's current namespace.
    fn open_here() -> io::Result<Conn> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        Ok(Conn {
            handle,
            task: tokio::spawn(connection),
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// State of the executor thread.
struct Worker {
    names: Names,
    local_vtep: Ipv4Addr,
    home: File,
    home_path: PathBuf,
    /// Connections opened during the current job, by namespace path (the host's under "").
    conns: BTreeMap<PathBuf, Conn>,
    /// Set when the thread could not return to its home namespace: it must not act again.
    broken: Option<String>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::ReadActual(d, tx) => {
                    let r = match self.guard() {
                        Ok(()) => self.read_actual(&d).await,
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(r);
                }
                Job::Apply(ops, tx) => {
                    let start = Instant::now();
                    let mut report = self.apply(ops).await;
                    report.elapsed = start.elapsed();
                    let _ = tx.send(report);
                }
                Job::Reconcile(d, tx) => {
                    let r = self.reconcile(&d).await;
                    let _ = tx.send(r);
                }
            }
            // Close every socket opened for this job, so no namespace is kept alive.
            self.conns.clear();
            tokio::task::yield_now().await;
        }
    }

    fn guard(&self) -> Result<(), Error> {
        match &self.broken {
            Some(why) => Err(Error::ExecutorGone(why.clone())),
            None => Ok(()),
        }
    }

    async fn reconcile(&mut self, desired: &Desired) -> Result<Report, Error> {
        let start = Instant::now();
        self.guard()?;
        desired.validate(&self.names)?;
        let actual = self.read_actual(desired).await?;
        let ops = plan(desired, &actual, self.local_vtep);
        let mut report = self.apply(ops).await;
        report.elapsed = start.elapsed();
        Ok(report)
    }

    async fn apply(&mut self, ops: Vec<Op>) -> Report {
        let mut report = Report::default();
        let mut unavailable = std::collections::BTreeSet::new();
        for op in ops {
            let result = match self.guard() {
                Err(e) => Err(e),
                Ok(()) if unavailable.contains(&op.vni()) => Err(Error::SandboxUnavailable {
                    sandbox: self.names.sandbox(op.vni()),
                }),
                Ok(()) => self.apply_one(&op).await,
            };
            if result.is_err() && matches!(op, Op::CreateSandbox { .. }) {
                unavailable.insert(op.vni());
            }
            match result {
                Ok(()) => {
                    tracing::debug!(prefix = %self.names.prefix, "applied {op}");
                    report.applied.push(op);
                }
                Err(error) => {
                    tracing::warn!(prefix = %self.names.prefix, "failed {op}: {error}");
                    report.failed.push(OpFailure { op, error });
                }
            }
        }
        report
    }

    // ---- namespaces and connections ----

    fn go_home(&mut self) -> Result<(), Error> {
        netns::enter(&self.home, &self.home_path).inspect_err(|e| {
            self.broken = Some(format!("could not return to its home namespace: {e}"));
        })
    }

    /// A handle on a socket in the namespace at `ns`.
    fn conn(&mut self, ns: &Path) -> Result<Handle, Error> {
        if let Some(c) = self.conns.get(ns) {
            return Ok(c.handle.clone());
        }
        let file = netns::open(ns)?;
        netns::enter(&file, ns)?;
        let conn = Conn::open_here();
        self.go_home()?;
        let conn =
            conn.map_err(|e| Error::io("open netlink socket in", ns.display().to_string(), e))?;
        let handle = conn.handle.clone();
        self.conns.insert(ns.to_path_buf(), conn);
        Ok(handle)
    }

    /// A handle in the host (home) namespace.
    fn host(&mut self) -> Result<Handle, Error> {
        let key = PathBuf::new();
        if let Some(c) = self.conns.get(&key) {
            return Ok(c.handle.clone());
        }
        let conn = Conn::open_here().map_err(|e| {
            Error::io(
                "open netlink socket in",
                self.home_path.display().to_string(),
                e,
            )
        })?;
        let handle = conn.handle.clone();
        self.conns.insert(key, conn);
        Ok(handle)
    }

    fn sandbox(&mut self, vni: u32) -> Result<Handle, Error> {
        let path = self.names.sandbox_path(vni);
        self.conn(&path)
    }

    fn obj(&self, what: &str, vni: u32) -> String {
        format!("{what} in {}", self.names.sandbox(vni))
    }

    /// The sandbox of `vni` and its `vxlan0`; `None` when there is no `vxlan0` (nothing to
    /// delete from).
    async fn vxlan_of(
        &mut self,
        vni: u32,
        op: &'static str,
    ) -> Result<Option<(Handle, netlink::Link)>, Error> {
        let h = self.sandbox(vni)?;
        let vx = netlink::link_by_name(&h, VXLAN_NAME)
            .await
            .map_err(|e| Error::netlink(op, self.obj(VXLAN_NAME, vni), e))?;
        Ok(vx.map(|vx| (h, vx)))
    }

    async fn index(
        &self,
        h: &Handle,
        vni: u32,
        name: &str,
        op: &'static str,
    ) -> Result<u32, Error> {
        match netlink::link_by_name(h, name).await {
            Ok(Some(l)) => Ok(l.index),
            Ok(None) => Err(Error::NotFound {
                op,
                object: self.obj(name, vni),
            }),
            Err(e) => Err(Error::netlink(op, self.obj(name, vni), e)),
        }
    }

    // ---- reading ----

    async fn read_actual(&mut self, desired: &Desired) -> Result<Actual, Error> {
        let mut actual = Actual::empty(self.names.clone());
        for (vni, name, path, mounted) in netns::list(&self.names)? {
            let mut sb = Sandbox {
                vni,
                netns: name.clone(),
                mounted,
                ..Sandbox::default()
            };
            if mounted {
                self.read_sandbox(&path, &mut sb).await?;
            }
            actual.sandboxes.insert(vni, sb);
        }
        // Container ends of desired endpoints whose veth exists.
        let vni_of: BTreeMap<&str, u32> = desired
            .networks
            .iter()
            .map(|n| (n.id.as_str(), n.vni))
            .collect();
        for e in &desired.endpoints {
            let Some(vni) = vni_of.get(e.network.as_str()) else {
                continue;
            };
            if e.handoff == crate::Handoff::Done {
                // The runtime moved it: not ours to read.
                continue;
            }
            let veth_name = self.names.veth(&e.id);
            let exists = actual
                .sandboxes
                .get(vni)
                .is_some_and(|sb| sb.veths.contains_key(&veth_name));
            if !exists {
                continue;
            }
            let container = self.read_container(e).await;
            if let Some(v) = actual
                .sandboxes
                .get_mut(vni)
                .and_then(|sb| sb.veths.get_mut(&veth_name))
            {
                v.container = container;
            }
        }
        Ok(actual)
    }

    async fn read_sandbox(&mut self, path: &Path, sb: &mut Sandbox) -> Result<(), Error> {
        let h = self.conn(path)?;
        let name = sb.netns.clone();
        let links = netlink::links(&h)
            .await
            .map_err(|e| Error::netlink("list links in", name.clone(), e))?;
        let addrs = netlink::addresses_v4(&h)
            .await
            .map_err(|e| Error::netlink("list addresses in", name.clone(), e))?;
        let addrs_of = |index: u32| -> Vec<Ipv4Network> {
            addrs
                .iter()
                .filter(|(i, _, _)| *i == index)
                .map(|(_, a, _)| *a)
                .collect()
        };
        let br_index = links
            .iter()
            .find(|l| l.name == BRIDGE_NAME)
            .map(|l| l.index);
        for l in &links {
            if l.name == BRIDGE_NAME {
                sb.bridge = Some(Bridge {
                    ifindex: l.index,
                    is_bridge: l.kind == Some(InfoKind::Bridge),
                    mtu: l.mtu,
                    up: l.up,
                    addresses: addrs_of(l.index),
                });
            } else if l.name == VXLAN_NAME {
                let mut v = Vxlan {
                    ifindex: l.index,
                    is_vxlan: l.kind == Some(InfoKind::Vxlan),
                    mtu: l.mtu,
                    up: l.up,
                    on_bridge: l.master.is_some() && l.master == br_index,
                    ..Vxlan::default()
                };
                for i in &l.vxlan {
                    match i {
                        InfoVxlan::Id(x) => v.vni = Some(*x),
                        InfoVxlan::Port(x) => v.port = Some(*x),
                        InfoVxlan::Local(x) => v.local = Some(*x),
                        InfoVxlan::Learning(x) => v.learning = *x,
                        InfoVxlan::Proxy(x) => v.proxy = *x,
                        _ => {}
                    }
                }
                sb.vxlan = Some(v);
            } else if self.names.is_veth(&l.name) {
                sb.veths.insert(
                    l.name.clone(),
                    Veth {
                        name: l.name.clone(),
                        ifindex: l.index,
                        alias: l.alias.clone(),
                        is_veth: l.kind == Some(InfoKind::Veth),
                        mtu: l.mtu,
                        up: l.up,
                        on_bridge: l.master.is_some() && l.master == br_index,
                        peer_ifindex: l.link,
                        container: None,
                    },
                );
            } else if l.name != "lo" {
                sb.other_links.push(l.name.clone());
            }
        }
        if let Some(vx) = sb.vxlan.as_ref().map(|v| v.ifindex) {
            let neigh = netlink::neighbours(&h, AddressFamily::Inet)
                .await
                .map_err(|e| Error::netlink("list neighbours in", name.clone(), e))?;
            sb.neighbours = neigh
                .into_iter()
                .filter(|n| n.ifindex == vx)
                .filter_map(|n| {
                    Some(NeighbourEntry {
                        ip: n.dst?,
                        mac: n.lladdr,
                        state: n.state,
                    })
                })
                .collect();
            sb.neighbours.sort();
            let fdb = netlink::neighbours(&h, AddressFamily::Bridge)
                .await
                .map_err(|e| Error::netlink("list fdb in", name.clone(), e))?;
            sb.fdb = fdb
                .into_iter()
                .filter(|n| n.ifindex == vx && n.flags.contains(NeighbourFlags::Own))
                .filter_map(|n| {
                    Some(FdbEntry {
                        mac: n.lladdr?,
                        dst: n.dst,
                        state: n.state,
                        port: n.port,
                        vni: n.vni,
                    })
                })
                .collect();
            sb.fdb.sort();
        }
        Ok(())
    }

    /// The container end of `e`, or `None` when its namespace or interface is not there.
    async fn read_container(&mut self, e: &LocalEndpoint) -> Option<ContainerIface> {
        let h = self.conn(&e.netns).ok()?;
        let links = netlink::links(&h).await.ok()?;
        let l = links.into_iter().find(|l| l.name == e.ifname)?;
        let addrs = netlink::addresses_v4(&h).await.ok()?;
        Some(ContainerIface {
            netns: e.netns.clone(),
            ifname: l.name,
            ifindex: l.index,
            peer_ifindex: l.link,
            mac: l.mac,
            mtu: l.mtu,
            up: l.up,
            addresses: addrs
                .into_iter()
                .filter(|(i, _, _)| *i == l.index)
                .map(|(_, a, _)| a)
                .collect(),
        })
    }

    // ---- applying ----

    async fn apply_one(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::DeleteSandbox { vni } => self.delete_sandbox(*vni).await,
            Op::DetachEndpoint { vni, veth } => {
                let h = self.sandbox(*vni)?;
                self.delete_link(&h, *vni, veth, "detach").await
            }
            Op::DeleteNeighbour { vni, ip } => {
                let Some((h, vx)) = self.vxlan_of(*vni, "delete neighbour").await? else {
                    return Ok(());
                };
                match netlink::del_neighbour(&h, vx.index, *ip).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_errno(&e, ENOENT) => Ok(()),
                    Err(e) => Err(Error::netlink(
                        "delete neighbour",
                        self.obj(&ip.to_string(), *vni),
                        e,
                    )),
                }
            }
            Op::DeleteFdb { vni, mac } => {
                let Some((h, vx)) = self.vxlan_of(*vni, "delete fdb entry").await? else {
                    return Ok(());
                };
                let shown = self.obj(&crate::mac::format(mac), *vni);
                match netlink::del_fdb(&h, vx.index, *mac, true).await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, ENOENT) => {}
                    Err(e) => return Err(Error::netlink("delete fdb entry", shown, e)),
                }
                // The bridge may have learned the MAC on the vxlan0 port; best effort.
                let _ = netlink::del_fdb(&h, vx.index, *mac, false).await;
                Ok(())
            }
            Op::DeleteVxlan { vni } => {
                let h = self.sandbox(*vni)?;
                self.delete_link(&h, *vni, VXLAN_NAME, "delete vxlan").await
            }
            Op::CreateSandbox { vni } => self.create_sandbox(*vni).await,
            Op::CreateBridge {
                vni,
                gateway,
                prefix_len,
                mtu,
            } => {
                let h = self.sandbox(*vni)?;
                let msg = LinkBridge::new(BRIDGE_NAME).mtu(*mtu).up().build();
                h.link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink("create bridge", self.obj(BRIDGE_NAME, *vni), e))?;
                self.configure_bridge(&h, *vni, *gateway, *prefix_len, *mtu)
                    .await
            }
            Op::ConfigureBridge {
                vni,
                gateway,
                prefix_len,
                mtu,
            } => {
                let h = self.sandbox(*vni)?;
                self.configure_bridge(&h, *vni, *gateway, *prefix_len, *mtu)
                    .await
            }
            Op::CreateVxlan {
                vni,
                port,
                local,
                mtu,
            } => self.create_vxlan(*vni, *port, *local, *mtu).await,
            Op::AttachEndpoint {
                vni,
                veth,
                endpoint,
            } => self.attach(*vni, veth, endpoint).await,
            Op::ReplaceFdb { vni, mac, vtep } => {
                let h = self.sandbox(*vni)?;
                let vx = self
                    .index(&h, *vni, VXLAN_NAME, "replace fdb entry")
                    .await?;
                h.neighbours()
                    .add_bridge(vx, mac)
                    .destination(IpAddr::V4(*vtep))
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| {
                        Error::netlink(
                            "replace fdb entry",
                            self.obj(&crate::mac::format(mac), *vni),
                            e,
                        )
                    })
            }
            Op::ReplaceNeighbour { vni, ip, mac } => {
                let h = self.sandbox(*vni)?;
                let vx = self
                    .index(&h, *vni, VXLAN_NAME, "replace neighbour")
                    .await?;
                h.neighbours()
                    .add(vx, IpAddr::V4(*ip))
                    .link_layer_address(mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| {
                        Error::netlink("replace neighbour", self.obj(&ip.to_string(), *vni), e)
                    })
            }
        }
    }

    async fn delete_link(
        &self,
        h: &Handle,
        vni: u32,
        name: &str,
        op: &'static str,
    ) -> Result<(), Error> {
        let Some(l) = netlink::link_by_name(h, name)
            .await
            .map_err(|e| Error::netlink(op, self.obj(name, vni), e))?
        else {
            return Ok(());
        };
        match h.link().del(l.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, ENODEV) => Ok(()),
            Err(e) => Err(Error::netlink(op, self.obj(name, vni), e)),
        }
    }

    async fn create_sandbox(&mut self, vni: u32) -> Result<(), Error> {
        let path = self.names.sandbox_path(vni);
        let shown = path.display().to_string();
        let created = netns::create_and_enter(&path);
        // Inside the new namespace (if created): open its socket and set sysctls there.
        let inside = created.and_then(|()| {
            netns::disable_ipv6_here()?;
            Conn::open_here().map_err(|e| Error::io("open netlink socket in", shown.clone(), e))
        });
        self.go_home()?;
        let conn = match inside {
            Ok(c) => c,
            Err(e) => {
                let _ = netns::remove(&path);
                return Err(e);
            }
        };
        let h = conn.handle.clone();
        self.conns.insert(path, conn);
        let lo = self.index(&h, vni, "lo", "bring up").await?;
        h.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("bring up", self.obj("lo", vni), e))
    }

    async fn delete_sandbox(&mut self, vni: u32) -> Result<(), Error> {
        let path = self.names.sandbox_path(vni);
        self.conns.remove(&path);
        if netns::is_nsfs(&path) {
            // Delete the interfaces explicitly: the namespace may outlive its mount (someone
            // may hold it open), and the VXLAN device must release its VNI in the host
            // namespace now, not whenever the namespace is finally freed.
            let h = self.conn(&path)?;
            let links = netlink::links(&h)
                .await
                .map_err(|e| Error::netlink("list links in", self.names.sandbox(vni), e))?;
            let rank = |k: &Option<InfoKind>| match k {
                Some(InfoKind::Veth) => 0,
                Some(InfoKind::Vxlan) => 1,
                _ => 2,
            };
            let mut doomed: Vec<_> = links.into_iter().filter(|l| l.name != "lo").collect();
            doomed.sort_by_key(|l| (rank(&l.kind), l.index));
            for l in doomed {
                match h.link().del(l.index).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, ENODEV) => {}
                    Err(e) => return Err(Error::netlink("delete link", self.obj(&l.name, vni), e)),
                }
            }
            self.conns.remove(&path);
        }
        netns::remove(&path)
    }

    async fn configure_bridge(
        &self,
        h: &Handle,
        vni: u32,
        gateway: Ipv4Addr,
        prefix_len: u8,
        mtu: u32,
    ) -> Result<(), Error> {
        let obj = || self.obj(BRIDGE_NAME, vni);
        let br = self.index(h, vni, BRIDGE_NAME, "configure bridge").await?;
        h.link()
            .set(LinkUnspec::new_with_index(br).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set mtu and up", obj(), e))?;
        let want = Ipv4Network::new(gateway, prefix_len).map_err(|e| Error::Invalid {
            object: obj(),
            reason: e.to_string(),
        })?;
        let addrs = netlink::addresses_v4(h)
            .await
            .map_err(|e| Error::netlink("list addresses of", obj(), e))?;
        let mut present = false;
        for (index, net, msg) in addrs {
            if index != br {
                continue;
            }
            if net == want {
                present = true;
                continue;
            }
            match h.address().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, EADDRNOTAVAIL) => {}
                Err(e) => {
                    return Err(Error::netlink(
                        "delete address",
                        format!("{net} on {}", obj()),
                        e,
                    ));
                }
            }
        }
        if !present {
            h.address()
                .add(br, IpAddr::V4(gateway), prefix_len)
                .replace()
                .execute()
                .await
                .map_err(|e| Error::netlink("add address", format!("{want} on {}", obj()), e))?;
        }
        Ok(())
    }

    async fn create_vxlan(
        &mut self,
        vni: u32,
        port: u16,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<(), Error> {
        let path = self.names.sandbox_path(vni);
        let sandbox_fd = netns::open(&path)?;
        let host = self.host()?;
        let mut builder = LinkVxlan::new(VXLAN_NAME, vni)
            .port(port)
            .learning(false)
            .proxy(true)
            .l2miss(false)
            .l3miss(false);
        if !local.is_unspecified() {
            builder = builder.local(local);
        }
        // Created by the host namespace's socket straight into the sandbox: the device's UDP
        // socket lives in the host namespace (like `ip -n HOST link add vxlan0 netns SANDBOX`).
        let msg = builder.mtu(mtu).setns_by_fd(sandbox_fd.as_raw_fd()).build();
        host.link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("create vxlan", self.obj(VXLAN_NAME, vni), e))?;
        drop(sandbox_fd);
        let h = self.sandbox(vni)?;
        let br = self.index(&h, vni, BRIDGE_NAME, "enslave vxlan to").await?;
        let vx = self.index(&h, vni, VXLAN_NAME, "enslave vxlan").await?;
        h.link()
            .set(LinkUnspec::new_with_index(vx).controller(br).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("enslave and bring up", self.obj(VXLAN_NAME, vni), e))
    }

    async fn attach(&mut self, vni: u32, veth: &str, e: &LocalEndpoint) -> Result<(), Error> {
        let h = self.sandbox(vni)?;
        let container_fd = netns::open(&e.netns)?;
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(e.ifname.clone()),
            LinkAttribute::Mtu(e.mtu),
            LinkAttribute::Address(e.mac.to_vec()),
            LinkAttribute::NetNsFd(container_fd.as_raw_fd()),
        ];
        let msg = LinkVeth::new(veth, &e.ifname)
            .mtu(e.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        h.link().add(msg).execute().await.map_err(|err| {
            Error::netlink(
                "create veth pair",
                format!(
                    "{veth} in {} / {} in {}",
                    self.names.sandbox(vni),
                    e.ifname,
                    e.netns.display()
                ),
                err,
            )
        })?;
        drop(container_fd);
        let result = self.configure_attachment(&h, vni, veth, e).await;
        if result.is_err() {
            // Leave nothing half-made behind (the container end goes with it).
            let _ = self.delete_link(&h, vni, veth, "roll back").await;
        }
        result
    }

    async fn configure_attachment(
        &mut self,
        h: &Handle,
        vni: u32,
        veth: &str,
        e: &LocalEndpoint,
    ) -> Result<(), Error> {
        let br = self.index(h, vni, BRIDGE_NAME, "attach to").await?;
        let idx = self.index(h, vni, veth, "attach").await?;
        h.link()
            .set(
                LinkUnspec::new_with_index(idx)
                    .controller(br)
                    .alias(e.id.clone())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|err| Error::netlink("enslave and bring up", self.obj(veth, vni), err))?;
        let c = self.conn(&e.netns)?;
        let shown = || format!("{} in {}", e.ifname, e.netns.display());
        let cidx = match netlink::link_by_name(&c, &e.ifname).await {
            Ok(Some(l)) => l.index,
            Ok(None) => {
                return Err(Error::NotFound {
                    op: "configure",
                    object: shown(),
                });
            }
            Err(err) => return Err(Error::netlink("configure", shown(), err)),
        };
        c.address()
            .add(cidx, IpAddr::V4(e.ip), e.prefix_len)
            .replace()
            .execute()
            .await
            .map_err(|err| {
                Error::netlink(
                    "add address",
                    format!("{}/{} on {}", e.ip, e.prefix_len, shown()),
                    err,
                )
            })?;
        c.link()
            .set(LinkUnspec::new_with_index(cidx).up().build())
            .execute()
            .await
            .map_err(|err| Error::netlink("bring up", shown(), err))
    }
}

#[cfg(test)]
mod tests {
    use super::Executor;

    #[test]
    fn the_executor_can_be_shared_between_threads_and_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Executor>();
    }
}
