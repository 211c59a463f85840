//! [`Handle`]: the API of a running node. Every call is a request to the node's core task,
//! answered once the core has applied it.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::stats::RuntimeStats;
use super::watch::{Watch, WatchOptions};
use crate::core::MemberInfo;
use crate::effects::Event;
use crate::error::Error;
use crate::types::{EntryRecord, NetworkId, NodeId, Peer};

/// A cheap, cloneable handle to a node started by [`super::spawn`].
///
/// The node runs while any handle exists; when the last one is dropped it leaves the cluster
/// and stops as [`Handle::shutdown`] does. Every method fails with [`Error::Stopped`] once
/// the node has stopped.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    addr: SocketAddr,
    bound: SocketAddr,
}

impl Handle {
    pub(crate) fn new(tx: mpsc::Sender<Command>, addr: SocketAddr, bound: SocketAddr) -> Handle {
        Handle { tx, addr, bound }
    }

    /// The address peers reach this node at (its gossip address, UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Join the cluster through `seeds` (this node's own address is ignored). Returns once the
    /// announcements are sent; membership arrives asynchronously (see
    /// [`Handle::watch_members`]). Seeds are re-announced to while none of them is up.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), Error> {
        self.call(|r| Command::Join(seeds, r)).await
    }

    /// Leave the cluster gracefully: peers see this node down at once. The node keeps
    /// serving requests locally; [`Handle::shutdown`] stops it.
    pub async fn leave(&self) -> Result<(), Error> {
        self.call(Command::Leave).await
    }

    /// Join a network's gossip.
    pub async fn join_network(&self, network: &str) -> Result<(), Error> {
        self.call(|r| Command::JoinNetwork(network.to_owned(), r))
            .await
    }

    /// Leave a network: own entries are deleted, the others hidden.
    pub async fn leave_network(&self, network: &str) -> Result<(), Error> {
        self.call(|r| Command::LeaveNetwork(network.to_owned(), r))
            .await
    }

    /// Create or update an entry owned by this node. Fails with [`Error::NotMember`] unless
    /// the network was joined, and with [`Error::Invalid`] for an empty key or a table that is
    /// empty or starts with `_`. On a durable table it returns once the change is on disk
    /// (see [`super::NodeConfig::durable_path`]); [`Error::Persist`] then says the write is
    /// live in the cluster but could not be saved here.
    pub async fn put(
        &self,
        network: &str,
        table: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        self.call(|reply| Command::Put {
            network: network.to_owned(),
            table: table.to_owned(),
            key: key.to_owned(),
            value,
            reply,
        })
        .await?
    }

    /// Delete an entry; false if there was no live one. Durable tables: as [`Handle::put`].
    pub async fn delete(&self, network: &str, table: &str, key: &str) -> Result<bool, Error> {
        self.call(|reply| Command::Delete {
            network: network.to_owned(),
            table: table.to_owned(),
            key: key.to_owned(),
            reply,
        })
        .await?
    }

    /// The visible value of an entry.
    pub async fn get(
        &self,
        network: &str,
        table: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.call(|reply| Command::Get {
            network: network.to_owned(),
            table: table.to_owned(),
            key: key.to_owned(),
            reply,
        })
        .await
    }

    /// Visible entries matching the filters (None = any), as Create events.
    pub async fn snapshot(
        &self,
        network: Option<&str>,
        table: Option<&str>,
    ) -> Result<Vec<Event>, Error> {
        self.call(|reply| Command::Snapshot {
            network: network.map(str::to_owned),
            table: table.map(str::to_owned),
            reply,
        })
        .await
    }

    /// Every stored record of one table of a network, as the core holds it: tombstones and
    /// entries of nodes that are down (suspended, hidden from watchers) included. For
    /// diagnostics and for naming nodes that are down; not for deciding what is live.
    pub async fn records(&self, network: &str, table: &str) -> Result<Vec<EntryRecord>, Error> {
        self.call(|reply| Command::Records {
            network: network.to_owned(),
            table: table.to_owned(),
            reply,
        })
        .await
    }

    /// Nodes this node knows of (itself excluded), up or down.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, Error> {
        self.call(Command::Members).await
    }

    /// Live nodes attached to a network (every live node for the cluster scope `""`), itself
    /// excluded.
    pub async fn network_members(&self, network: &str) -> Result<Vec<NodeId>, Error> {
        self.call(|r| Command::NetworkMembers(network.to_owned(), r))
            .await
    }

    /// Networks this node is a member of, the cluster scope `""` included.
    pub async fn networks(&self) -> Result<Vec<NetworkId>, Error> {
        self.call(Command::Networks).await
    }

    /// This node's identity (its generation grows if the cluster declared it down and it
    /// rejoined).
    pub async fn me(&self) -> Result<Peer, Error> {
        self.call(Command::Me).await
    }

    /// Add a key to the ring (it opens payloads at once; it seals only once primary).
    pub async fn add_key(&self, key: Vec<u8>) -> Result<(), Error> {
        self.call(|r| Command::AddKey(key, r)).await?
    }

    /// Remove a key. The primary cannot be removed while other keys remain.
    pub async fn remove_key(&self, key: Vec<u8>) -> Result<(), Error> {
        self.call(|r| Command::RemoveKey(key, r)).await?
    }

    /// Make a key of the ring the one that seals.
    pub async fn set_primary_key(&self, key: Vec<u8>) -> Result<(), Error> {
        self.call(|r| Command::SetPrimaryKey(key, r)).await?
    }

    /// Counters of the core and the runtime.
    pub async fn stats(&self) -> Result<RuntimeStats, Error> {
        self.call(Command::Stats).await
    }

    /// Watch entries of a network and/or table (None = any): the current entries first, as
    /// Create events, then every change.
    pub async fn watch(
        &self,
        network: Option<String>,
        table: Option<String>,
    ) -> Result<Watch, Error> {
        self.watch_with(WatchOptions {
            network,
            table,
            ..WatchOptions::default()
        })
        .await
    }

    /// Watch membership: the nodes that are up first, then every up and down.
    pub async fn watch_members(&self) -> Result<Watch, Error> {
        self.watch_with(WatchOptions {
            entries: false,
            members: true,
            ..WatchOptions::default()
        })
        .await
    }

    /// Watch with every option.
    pub async fn watch_with(&self, options: WatchOptions) -> Result<Watch, Error> {
        self.call(|r| Command::Watch(options, r)).await
    }

    /// Leave the cluster gracefully, give the leave ~200 ms to go out, then stop the node and
    /// close its sockets. Returns once they are closed; watches end after their queued events.
    /// Calls made while it is stopping return with it; calls on a stopped node return
    /// [`Error::Stopped`].
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.call(Command::Shutdown).await
    }
}
