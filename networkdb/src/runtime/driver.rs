//! The core task: the only owner of the [`Core`]. It serialises commands, datagrams, stream
//! frames and timers into core calls and carries out each call's effects right after it.
//!
//! Order of work in one turn: wait for any input or the earliest timer, take that input and
//! whatever else is ready (bounded), then run every timer that is due. Zero-delay timers
//! (`Timer::Flush`) are therefore run after the batch that scheduled them, so writes made
//! back to back share packets.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::command::Command;
use super::keys::{self, Keys, Opened};
use super::persist::Persister;
use super::stats::{IoCounters, RuntimeStats, bump};
use super::stream::{self, Inbound};
use super::timers::TimerQueue;
use super::watch::Watchers;
use crate::core::Core;
use crate::effects::Effects;
use crate::effects::Transport;
use crate::error::Error;

/// Most inputs of one kind taken in one turn beyond the first.
const BATCH: usize = 64;
/// Most timers run in one turn.
const TIMERS_PER_TURN: usize = 1024;
/// Time given to foca's leave messages before the sockets close.
const LEAVE_LINGER: Duration = Duration::from_millis(200);
/// Longest wait for requests already on their way when the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer: any UDP datagram fits; the core rejects frames over its limit.
const DATAGRAM_BUFFER: usize = 65536;

pub(crate) struct Driver {
    pub core: Core,
    /// Time zero of the core's `now`.
    pub start: Instant,
    pub udp: UdpSocket,
    pub ring: Arc<RwLock<Keys>>,
    pub counters: Arc<IoCounters>,
    pub streams: stream::Sender,
    pub acceptor: JoinHandle<()>,
    pub timers: TimerQueue,
    pub watchers: Watchers,
    pub outbox: Effects,
    pub commands: mpsc::Receiver<Command>,
    pub unwatch: mpsc::UnboundedReceiver<u64>,
    pub inbound: mpsc::Receiver<Inbound>,
    /// Set once stopping: the turn at which the loop ends.
    pub stop_at: Option<Instant>,
    pub stop_replies: Vec<oneshot::Sender<()>>,
    /// See `NodeConfig::inbound_loss` (feature `faults`).
    #[cfg(feature = "faults")]
    pub inbound_loss: f64,
    /// Writer of the durable tables file, if configured.
    pub persister: Option<Persister>,
    /// Replies to puts and deletes on durable tables, waiting for this generation of the
    /// durable tables to be on disk.
    pub durable_waiters: Vec<(u64, DurableReply)>,
}

/// Sends the reply of a durable write once its outcome on disk is known.
pub(crate) type DurableReply = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// Resolves when the writer reports a new generation: true, or false when it is gone.
async fn persisted(p: Option<&mut Persister>) -> bool {
    match p {
        Some(p) => p.written.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Driver {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    pub async fn run(mut self) {
        let now = self.now();
        self.core.start(now, &mut self.outbox);
        self.effects(now).await;
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut commands_open = true;
        loop {
            if self.stop_at.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let wake = match (self.timers.next_deadline(), self.stop_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                c = self.commands.recv(), if commands_open => match c {
                    Some(c) => self.command(c).await,
                    None => {
                        // Every handle is gone.
                        commands_open = false;
                        self.begin_stop().await;
                    }
                },
                Some(id) = self.unwatch.recv() => self.watchers.remove(id),
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(&buf[..n], from).await,
                    Err(e) => tracing::debug!(error = %e, "udp receive"),
                },
                Some((from, frame)) = self.inbound.recv() => self.frame(from, &frame).await,
                alive = persisted(self.persister.as_mut()) => self.durable_written(alive),
                () = sleep_until(wake), if wake.is_some() => {}
            }
            for _ in 0..BATCH {
                match self.udp.try_recv_from(&mut buf) {
                    Ok((n, from)) => self.datagram(&buf[..n], from).await,
                    Err(_) => break,
                }
            }
            for _ in 0..BATCH {
                match self.inbound.try_recv() {
                    Ok((from, frame)) => self.frame(from, &frame).await,
                    Err(_) => break,
                }
            }
            for _ in 0..BATCH {
                if !commands_open {
                    break;
                }
                match self.commands.try_recv() {
                    Ok(c) => self.command(c).await,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        commands_open = false;
                        self.begin_stop().await;
                    }
                }
            }
            while let Ok(id) = self.unwatch.try_recv() {
                self.watchers.remove(id);
            }
            self.run_due_timers().await;
            self.persist_changes();
        }
        self.flush_durable().await;
        self.close().await;
    }

    /// Hand the durable tables to the writer if they changed and it is idle (it coalesces:
    /// only the newest state is ever written).
    fn persist_changes(&mut self) {
        let Some(p) = self.persister.as_mut() else {
            return;
        };
        let generation = self.core.durable_changes();
        if generation != p.submitted && !p.busy() {
            let now = Instant::now().saturating_duration_since(self.start);
            p.submit(generation, self.core.durable_records(now));
        }
    }

    /// The writer reported (or is gone): answer the writes that are on disk now.
    fn durable_written(&mut self, alive: bool) {
        let Some(p) = self.persister.as_ref() else {
            return;
        };
        let written = p.written.borrow().clone();
        let path = p.path().to_path_buf();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.durable_waiters)
            .into_iter()
            .partition(|(g, _)| !alive || *g <= written.generation);
        self.durable_waiters = waiting;
        for (_, reply) in done {
            let outcome = match (&written.error, alive) {
                (_, false) => Err(Error::Persist {
                    path: path.clone(),
                    reason: "the writer thread stopped".into(),
                }),
                (Some(e), true) => Err(Error::Persist {
                    path: path.clone(),
                    reason: e.clone(),
                }),
                (None, true) => Ok(()),
            };
            reply(outcome);
        }
        if !alive {
            tracing::error!(path = %path.display(), "the durable tables writer stopped: changes are no longer saved");
            self.persister = None;
        }
    }

    /// On stop: write what is not on disk yet (bounded), answer every waiting write.
    async fn flush_durable(&mut self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT * 5;
        loop {
            self.persist_changes();
            let target = self.core.durable_changes();
            let Some(p) = self.persister.as_mut() else {
                break;
            };
            if p.written.borrow().generation >= target {
                break;
            }
            match tokio::time::timeout_at(deadline, p.written.changed()).await {
                Ok(Ok(())) => self.durable_written(true),
                _ => break,
            }
        }
        self.durable_written(true);
        for (_, reply) in std::mem::take(&mut self.durable_waiters) {
            reply(Err(Error::Stopped));
        }
        if let Some(p) = self.persister.take() {
            let _ = tokio::task::spawn_blocking(move || p.finish()).await;
        }
    }

    /// Answer a write now, or once the durable tables that hold it are on disk.
    fn reply_durable(&mut self, before: u64, reply: DurableReply) {
        let after = self.core.durable_changes();
        if after != before && self.persister.is_some() {
            self.durable_waiters.push((after, reply));
        } else {
            reply(Ok(()));
        }
    }

    async fn close(self) {
        let Driver {
            mut commands,
            mut watchers,
            acceptor,
            udp,
            stop_replies,
            ..
        } = self;
        // Refuse further requests, and drop those already queued or being queued (their
        // callers get `Error::Stopped`) before anyone can observe the stop: a request
        // queued after a plain drop of the receiver would never be answered while handles
        // remain.
        commands.close();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(c) = commands.recv().await {
                drop(c);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still arriving after the node stopped");
        }
        watchers.close_all();
        acceptor.abort();
        // The listener is dropped with the aborted task: wait for that.
        let _ = acceptor.await;
        drop(udp);
        tracing::info!("stopped");
        for r in stop_replies {
            let _ = r.send(());
        }
    }

    async fn run_due_timers(&mut self) {
        for _ in 0..TIMERS_PER_TURN {
            let Some(timer) = self.timers.pop_due(Instant::now()) else {
                return;
            };
            let now = self.now();
            self.core.handle_timer(now, timer, &mut self.outbox);
            self.effects(now).await;
        }
    }

    async fn datagram(&mut self, payload: &[u8], from: SocketAddr) {
        bump(&self.counters.datagrams_in, 1);
        bump(&self.counters.udp_bytes_in, payload.len() as u64);
        #[cfg(feature = "faults")]
        if self.inbound_loss > 0.0 && rand::random_bool(self.inbound_loss.min(1.0)) {
            return;
        }
        let opened = keys::read(&self.ring).open(payload, Instant::now());
        match opened {
            Ok(Opened::Ring(frame)) => self.frame(from, &frame).await,
            Ok(Opened::Removed(frame)) => {
                bump(&self.counters.removed_key_opens, 1);
                self.frame(from, &frame).await;
            }
            Err(e) => {
                bump(&self.counters.open_failures, 1);
                tracing::debug!(%from, error = %e, "datagram did not open: dropped");
            }
        }
    }

    /// An opened frame from a peer.
    async fn frame(&mut self, from: SocketAddr, frame: &[u8]) {
        let now = self.now();
        self.core.handle_frame(now, from, frame, &mut self.outbox);
        self.effects(now).await;
    }

    /// Carry out what the core call made at `now` asked for: timers, notifications (while
    /// the core still is in the state that call left it in), sends.
    async fn effects(&mut self, now: Duration) {
        let base = self.start + now;
        for (after, timer) in self.outbox.timers.drain(..) {
            self.timers.push(base + after, timer);
        }
        if !self.outbox.notes.is_empty() {
            let notes = std::mem::take(&mut self.outbox.notes);
            self.watchers.dispatch(&self.core, &notes);
        }
        let sends = std::mem::take(&mut self.outbox.sends);
        for (to, transport, frame) in sends {
            match transport {
                Transport::Datagram => {
                    let sealed = keys::read(&self.ring).seal(&frame, &mut rand::rng());
                    match self.udp.send_to(&sealed, to).await {
                        Ok(n) => {
                            bump(&self.counters.datagrams_out, 1);
                            bump(&self.counters.udp_bytes_out, n as u64);
                        }
                        Err(e) => {
                            bump(&self.counters.send_errors, 1);
                            tracing::debug!(%to, error = %e, "udp send");
                        }
                    }
                }
                Transport::Stream => self.streams.send(to, frame),
            }
        }
    }

    /// Leave the cluster and end the loop after [`LEAVE_LINGER`], still serving meanwhile.
    async fn begin_stop(&mut self) {
        if self.stop_at.is_some() {
            return;
        }
        let now = self.now();
        self.core.leave(now, &mut self.outbox);
        self.effects(now).await;
        self.stop_at = Some(Instant::now() + LEAVE_LINGER);
    }

    async fn command(&mut self, c: Command) {
        let now = self.now();
        let out = &mut self.outbox;
        // Replies are sent after the effects are carried out; a caller that went away
        // does not matter.
        match c {
            Command::Join(seeds, r) => {
                self.core.join(now, &seeds, out);
                self.effects(now).await;
                let _ = r.send(());
            }
            Command::Leave(r) => {
                self.core.leave(now, out);
                self.effects(now).await;
                let _ = r.send(());
            }
            Command::JoinNetwork(id, r) => {
                self.core.join_network(now, &id, out);
                self.effects(now).await;
                let _ = r.send(());
            }
            Command::LeaveNetwork(id, r) => {
                self.core.leave_network(now, &id, out);
                self.effects(now).await;
                let _ = r.send(());
            }
            Command::Put {
                network,
                table,
                key,
                value,
                reply,
            } => {
                let before = self.core.durable_changes();
                let res = self.core.put(now, &network, &table, &key, value, out);
                self.effects(now).await;
                match res {
                    Ok(()) => self.reply_durable(
                        before,
                        Box::new(move |r| {
                            let _ = reply.send(r);
                        }),
                    ),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Delete {
                network,
                table,
                key,
                reply,
            } => {
                let before = self.core.durable_changes();
                let res = self.core.delete(now, &network, &table, &key, out);
                self.effects(now).await;
                match res {
                    Ok(live) => self.reply_durable(
                        before,
                        Box::new(move |r| {
                            let _ = reply.send(r.map(|()| live));
                        }),
                    ),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Get {
                network,
                table,
                key,
                reply,
            } => {
                let _ = reply.send(self.core.get(&network, &table, &key).map(<[u8]>::to_vec));
            }
            Command::Snapshot {
                network,
                table,
                reply,
            } => {
                let _ = reply.send(self.core.snapshot(network.as_deref(), table.as_deref()));
            }
            Command::Records {
                network,
                table,
                reply,
            } => {
                let mut records = self.core.records(now, &network);
                records.retain(|r| r.table == table);
                let _ = reply.send(records);
            }
            Command::Members(r) => {
                let _ = r.send(self.core.members());
            }
            Command::NetworkMembers(id, r) => {
                let _ = r.send(self.core.network_members(&id));
            }
            Command::Networks(r) => {
                let _ = r.send(self.core.networks());
            }
            Command::Me(r) => {
                let _ = r.send(self.core.me().clone());
            }
            Command::AddKey(k, r) => {
                let res = keys::write(&self.ring).add(&k);
                let _ = r.send(res);
            }
            Command::RemoveKey(k, r) => {
                let res = keys::write(&self.ring).remove(&k, Instant::now());
                let _ = r.send(res);
            }
            Command::SetPrimaryKey(k, r) => {
                let res = keys::write(&self.ring).set_primary(&k);
                let _ = r.send(res);
            }
            Command::Stats(r) => {
                let _ = r.send(self.stats());
            }
            Command::Watch(options, r) => {
                // Every earlier notification was dispatched: the snapshot and the changes
                // that follow it line up.
                let w = self.watchers.register(&self.core, options);
                // A caller that went away drops the watch, which unregisters it.
                let _ = r.send(w);
            }
            Command::Shutdown(r) => {
                self.stop_replies.push(r);
                self.begin_stop().await;
            }
        }
    }

    fn stats(&self) -> RuntimeStats {
        let mut s = RuntimeStats {
            core: self.core.stats().clone(),
            watchers: self.watchers.len(),
            watch_overflows: self.watchers.overflows,
            queue_depth: self.core.queue_depth(),
            members_up: self.core.members().iter().filter(|m| m.up).count(),
            keys: keys::read(&self.ring).len(),
            ..RuntimeStats::default()
        };
        self.counters.read_into(&mut s);
        s
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("core", &self.core)
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}
