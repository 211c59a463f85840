//! The hub: one per agent. A task recomputes the view after every networkdb change (table
//! entries and membership, debounced) and periodically, and records the difference in the
//! [`Log`]; every `Events` stream is a task that follows the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::pb;
use proto::pb::watch_event::Type;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::log::{Change, Key, Kind, Log, Object};
use crate::error::Result;
use crate::node::Agent;

/// Changes kept for resuming streams.
pub const KEPT_CHANGES: usize = 4096;
/// Changes arriving within this window are folded into one recomputation.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// The view is also recomputed this often (members' names and counts that change without a
/// table write of their own).
const PERIOD: Duration = Duration::from_secs(2);
/// Events buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 256;

/// The watch hub of one agent.
#[derive(Debug)]
pub struct Hub {
    log: Mutex<Log>,
    revision: watch::Sender<u64>,
    /// Serialises recomputations, so that an older view is never recorded after a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

/// A stream of events for the API.
pub type EventStream = ReceiverStream<std::result::Result<pb::WatchEvent, tonic::Status>>;

impl Hub {
    /// A hub with an empty view (the first recomputation fills it). Call [`Hub::run`] on a
    /// task.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            log: Mutex::new(Log::new(crate::node::random_id(), KEPT_CHANGES)),
            revision: watch::channel(0).0,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Start the hub's task for `agent` (it ends when networkdb stops).
    pub fn start(agent: Arc<Agent>) -> Arc<Hub> {
        let hub = Hub::new();
        tokio::spawn(hub.clone().run(agent));
        hub
    }

    /// Recompute the view now; returns the number of changes recorded. A stream opened
    /// after a refresh that followed a write sees that write.
    pub async fn refresh(&self, agent: &Agent) -> Result<usize> {
        let _one = self.refreshing.lock().await;
        let view = view(agent).await?;
        let (n, rev) = {
            let mut log = self.log.lock().expect("not poisoned");
            let n = log.update(view);
            (n, log.revision())
        };
        if n > 0 {
            self.revision.send_replace(rev);
        }
        Ok(n)
    }

    /// Recompute the view on every networkdb event (debounced) and every [`PERIOD`].
    pub async fn run(self: Arc<Self>, agent: Arc<Agent>) {
        let mut w = match agent
            .db
            .watch_with(networkdb::runtime::WatchOptions {
                members: true,
                ..Default::default()
            })
            .await
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "watch hub: cannot watch networkdb; recomputing periodically only");
                None
            }
        };
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.refresh(&agent).await {
                tracing::debug!(error = %e, "watch hub: recomputing the view");
                if matches!(e, crate::error::AgentError::Db(networkdb::Error::Stopped)) {
                    return;
                }
            }
            match &mut w {
                Some(watch) => tokio::select! {
                    ev = watch.next() => {
                        if ev.is_none() {
                            w = None;
                            continue;
                        }
                        tokio::time::sleep(DEBOUNCE).await;
                        // Drain what arrived meanwhile: one recomputation covers it.
                        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, watch.next()).await {}
                    }
                    _ = tick.tick() => {}
                },
                None => {
                    tick.tick().await;
                }
            }
        }
    }

    /// The epoch and revision now.
    pub fn position(&self) -> (String, u64) {
        let log = self.log.lock().expect("not poisoned");
        (log.epoch().to_string(), log.revision())
    }

    /// A stream for `req` (see `Watch.Events` in the API).
    pub fn subscribe(self: &Arc<Self>, req: &pb::WatchRequest) -> EventStream {
        let kinds: BTreeSet<Kind> = req.kinds.iter().filter_map(|k| Kind::from_pb(*k)).collect();
        let resume = (!req.epoch.is_empty()).then(|| (req.epoch.clone(), req.after_revision));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().feed(tx, kinds, resume));
        ReceiverStream::new(rx)
    }

    async fn feed(
        self: Arc<Self>,
        tx: mpsc::Sender<std::result::Result<pb::WatchEvent, tonic::Status>>,
        kinds: BTreeSet<Kind>,
        resume: Option<(String, u64)>,
    ) {
        let mut changed = self.revision.subscribe();
        let wanted = |k: Kind| kinds.is_empty() || kinds.contains(&k);
        // Where the stream stands: the revision of the last change it sent (or skipped).
        let mut at = {
            let resumed = {
                let log = self.log.lock().expect("not poisoned");
                resume
                    .as_ref()
                    .filter(|(epoch, _)| epoch == log.epoch())
                    .and_then(|(_, rev)| {
                        log.since(*rev).map(|c| (*rev, c, log.epoch().to_string()))
                    })
            };
            match resumed {
                Some((rev, missed, epoch)) => {
                    let mut events = vec![marker(Type::Resumed, rev, &epoch)];
                    let mut last = rev;
                    for c in &missed {
                        last = c.revision;
                        if wanted(c.key.0) {
                            events.push(change_event(c, &epoch));
                        }
                    }
                    if !send_all(&tx, events).await {
                        return;
                    }
                    last
                }
                None => match self.send_snapshot(&tx, &wanted).await {
                    Some(rev) => rev,
                    None => return,
                },
            }
        };
        loop {
            if changed.changed().await.is_err() {
                return;
            }
            let (epoch, batch) = {
                let log = self.log.lock().expect("not poisoned");
                (log.epoch().to_string(), log.since(at))
            };
            match batch {
                Some(changes) => {
                    let mut events = Vec::new();
                    for c in &changes {
                        at = c.revision;
                        if wanted(c.key.0) {
                            events.push(change_event(c, &epoch));
                        }
                    }
                    if !send_all(&tx, events).await {
                        return;
                    }
                }
                None => {
                    // Fell behind what the log keeps: start over with a snapshot.
                    match self.send_snapshot(&tx, &wanted).await {
                        Some(rev) => at = rev,
                        None => return,
                    }
                }
            }
        }
    }

    /// Send a snapshot; returns its revision, `None` when the client is gone.
    async fn send_snapshot(
        &self,
        tx: &mpsc::Sender<std::result::Result<pb::WatchEvent, tonic::Status>>,
        wanted: &impl Fn(Kind) -> bool,
    ) -> Option<u64> {
        let (epoch, (rev, objects)) = {
            let log = self.log.lock().expect("not poisoned");
            (log.epoch().to_string(), log.snapshot())
        };
        let mut events = vec![marker(Type::SnapshotBegin, rev, &epoch)];
        for o in objects.iter().filter(|o| wanted(o.kind())) {
            events.push(object_event(Type::Put, rev, &epoch, o));
        }
        events.push(marker(Type::SnapshotEnd, rev, &epoch));
        send_all(tx, events).await.then_some(rev)
    }
}

async fn send_all(
    tx: &mpsc::Sender<std::result::Result<pb::WatchEvent, tonic::Status>>,
    events: Vec<pb::WatchEvent>,
) -> bool {
    for e in events {
        if tx.send(Ok(e)).await.is_err() {
            return false;
        }
    }
    true
}

fn marker(t: Type, revision: u64, epoch: &str) -> pb::WatchEvent {
    pb::WatchEvent {
        r#type: t as i32,
        revision,
        epoch: epoch.to_string(),
        ..Default::default()
    }
}

fn object_event(t: Type, revision: u64, epoch: &str, o: &Object) -> pb::WatchEvent {
    pb::WatchEvent {
        r#type: t as i32,
        revision,
        epoch: epoch.to_string(),
        kind: o.kind().to_pb() as i32,
        id: o.id().to_string(),
        object: Some(o.to_pb()),
    }
}

fn change_event(c: &Change, epoch: &str) -> pb::WatchEvent {
    let t = if c.new.is_some() {
        Type::Put
    } else {
        Type::Delete
    };
    match c.object() {
        Some(o) => object_event(t, c.revision, epoch, o),
        None => pb::WatchEvent {
            r#type: t as i32,
            revision: c.revision,
            epoch: epoch.to_string(),
            kind: c.key.0.to_pb() as i32,
            id: c.key.1.clone(),
            object: None,
        },
    }
}

/// The agent's view now, from its read operations.
pub async fn view(agent: &Agent) -> Result<BTreeMap<Key, Object>> {
    let mut out = BTreeMap::new();
    let mut put = |o: Object| {
        out.insert(o.key(), o);
    };
    for n in agent.list_networks().await? {
        put(Object::Network((&n).into()));
    }
    for s in agent.list_services().await? {
        put(Object::Service((&s).into()));
    }
    for e in agent.list_endpoints("").await? {
        put(Object::Endpoint((&e).into()));
    }
    for m in agent.members().await? {
        put(Object::Member((&m).into()));
    }
    Ok(out)
}
