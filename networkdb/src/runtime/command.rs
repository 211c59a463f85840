//! Requests a [`super::Handle`] sends to the core task, each with its reply channel.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::stats::RuntimeStats;
use super::watch::{Watch, WatchOptions};
use crate::core::MemberInfo;
use crate::effects::Event;
use crate::error::Error;
use crate::types::EntryRecord;
use crate::types::{NetworkId, NodeId, Peer};

type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub(crate) enum Command {
    Join(Vec<SocketAddr>, Reply<()>),
    Leave(Reply<()>),
    JoinNetwork(NetworkId, Reply<()>),
    LeaveNetwork(NetworkId, Reply<()>),
    Put {
        network: NetworkId,
        table: String,
        key: String,
        value: Vec<u8>,
        reply: Reply<Result<(), Error>>,
    },
    Delete {
        network: NetworkId,
        table: String,
        key: String,
        reply: Reply<Result<bool, Error>>,
    },
    Get {
        network: NetworkId,
        table: String,
        key: String,
        reply: Reply<Option<Vec<u8>>>,
    },
    Snapshot {
        network: Option<NetworkId>,
        table: Option<String>,
        reply: Reply<Vec<Event>>,
    },
    Records {
        network: NetworkId,
        table: String,
        reply: Reply<Vec<EntryRecord>>,
    },
    Members(Reply<Vec<MemberInfo>>),
    NetworkMembers(NetworkId, Reply<Vec<NodeId>>),
    Networks(Reply<Vec<NetworkId>>),
    Me(Reply<Peer>),
    AddKey(Vec<u8>, Reply<Result<(), Error>>),
    RemoveKey(Vec<u8>, Reply<Result<(), Error>>),
    SetPrimaryKey(Vec<u8>, Reply<Result<(), Error>>),
    Stats(Reply<RuntimeStats>),
    Watch(WatchOptions, Reply<Watch>),
    Shutdown(Reply<()>),
}
