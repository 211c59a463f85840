//! Watches: a subscriber first receives the current state, then every matching change, in
//! order. A slow subscriber never blocks the core task: its queue is bounded, and on overflow
//! it is replaced by [`WatchEvent::Reset`] and a fresh snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};

use crate::core::Core;
use crate::effects::{Event, MemberEvent, Notification};

/// One item a [`Watch`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// An entry became visible (Create), changed (Update) or went away (Delete). The initial
    /// snapshot arrives as Create events.
    Entry(Event),
    /// A node went up or down (only for watches with [`WatchOptions::members`]). The initial
    /// snapshot lists the nodes that are up.
    Member(MemberEvent),
    /// The queue overflowed and was dropped: forget what was received so far; a fresh snapshot
    /// follows, then changes again.
    Reset,
}

/// What a watch receives.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Only entries of this network (None: every network, `Some("")`: the cluster scope).
    pub network: Option<String>,
    /// Only entries of this table (None: every table, internal ones included).
    pub table: Option<String>,
    /// Receive entry events.
    pub entries: bool,
    /// Receive membership events.
    pub members: bool,
    /// Events queued beyond the initial snapshot before the queue overflows (None: the node's
    /// `watch_capacity`).
    pub capacity: Option<usize>,
}

impl Default for WatchOptions {
    /// Every entry event, no membership events, the node's capacity.
    fn default() -> Self {
        WatchOptions {
            network: None,
            table: None,
            entries: true,
            members: false,
            capacity: None,
        }
    }
}

impl WatchOptions {
    fn matches(&self, n: &Notification) -> bool {
        match n {
            Notification::Entry(e) => {
                self.entries
                    && self.network.as_ref().is_none_or(|f| *f == e.network)
                    && self.table.as_ref().is_none_or(|f| *f == e.table)
            }
            Notification::Member(_) => self.members,
        }
    }

    fn snapshot(&self, core: &Core) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        if self.members {
            out.extend(core.members().into_iter().filter(|m| m.up).map(|m| {
                WatchEvent::Member(MemberEvent {
                    peer: m.peer,
                    up: true,
                })
            }));
        }
        if self.entries {
            out.extend(
                core.snapshot(self.network.as_deref(), self.table.as_deref())
                    .into_iter()
                    .map(WatchEvent::Entry),
            );
        }
        out
    }
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<WatchEvent>,
    /// Items at the front that belong to a snapshot (Reset included): not charged to capacity.
    snapshot_left: usize,
    capacity: usize,
    /// The node stopped: no more events will come.
    closed: bool,
}

impl Queue {
    fn changes(&self) -> usize {
        self.items.len() - self.snapshot_left
    }

    fn reset(&mut self, reset: bool, snapshot: Vec<WatchEvent>) {
        self.items.clear();
        if reset {
            self.items.push_back(WatchEvent::Reset);
        }
        self.items.extend(snapshot);
        self.snapshot_left = self.items.len();
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent (every update is
        // a single push, pop or replace), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A subscription to changes. Dropping it unregisters it.
#[derive(Debug)]
pub struct Watch {
    id: u64,
    shared: Arc<Shared>,
    unwatch: mpsc::UnboundedSender<u64>,
}

impl Watch {
    /// The next event, waiting for one. None once the node has stopped and every queued
    /// event was received.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            {
                let mut q = self.shared.lock();
                if let Some(ev) = q.items.pop_front() {
                    q.snapshot_left = q.snapshot_left.saturating_sub(1);
                    return Some(ev);
                }
                if q.closed {
                    return None;
                }
            }
            // Single consumer: a notify_one that raced with the check above left a permit.
            self.shared.notify.notified().await;
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        let mut q = self.shared.lock();
        let ev = q.items.pop_front()?;
        q.snapshot_left = q.snapshot_left.saturating_sub(1);
        Some(ev)
    }

    /// Events queued now.
    pub fn pending(&self) -> usize {
        self.shared.lock().items.len()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The core task may already be gone; then there is nothing to unregister from.
        let _ = self.unwatch.send(self.id);
    }
}

#[derive(Debug)]
struct Watcher {
    options: WatchOptions,
    shared: Arc<Shared>,
}

/// The core task's registry of watches.
#[derive(Debug)]
pub(crate) struct Watchers {
    next_id: u64,
    list: BTreeMap<u64, Watcher>,
    default_capacity: usize,
    unwatch: mpsc::UnboundedSender<u64>,
    pub overflows: u64,
}

impl Watchers {
    pub fn new(default_capacity: usize, unwatch: mpsc::UnboundedSender<u64>) -> Watchers {
        Watchers {
            next_id: 0,
            list: BTreeMap::new(),
            default_capacity,
            unwatch,
            overflows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Register a watch; its queue starts with the current snapshot. Call only when every
    /// notification of earlier core calls was dispatched.
    pub fn register(&mut self, core: &Core, options: WatchOptions) -> Watch {
        self.next_id += 1;
        let id = self.next_id;
        let capacity = options.capacity.unwrap_or(self.default_capacity).max(1);
        let mut queue = Queue {
            items: VecDeque::new(),
            snapshot_left: 0,
            capacity,
            closed: false,
        };
        queue.reset(false, options.snapshot(core));
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            notify: Notify::new(),
        });
        self.list.insert(
            id,
            Watcher {
                options,
                shared: shared.clone(),
            },
        );
        Watch {
            id,
            shared,
            unwatch: self.unwatch.clone(),
        }
    }

    pub fn remove(&mut self, id: u64) {
        self.list.remove(&id);
    }

    /// Hand the notifications of one core call to every matching watcher. `core` must be the
    /// state right after that call: a watcher that overflows gets it as its fresh snapshot,
    /// which already reflects the rest of `notes`.
    pub fn dispatch(&mut self, core: &Core, notes: &[Notification]) {
        if notes.is_empty() {
            return;
        }
        for w in self.list.values() {
            let mut pushed = false;
            let mut q = w.shared.lock();
            for n in notes.iter().filter(|n| w.options.matches(n)) {
                if q.changes() >= q.capacity {
                    q.reset(true, w.options.snapshot(core));
                    self.overflows += 1;
                    pushed = true;
                    break;
                }
                q.items.push_back(match n {
                    Notification::Entry(e) => WatchEvent::Entry(e.clone()),
                    Notification::Member(m) => WatchEvent::Member(m.clone()),
                });
                pushed = true;
            }
            drop(q);
            if pushed {
                w.shared.notify.notify_one();
            }
        }
    }

    /// The node stopped: every watch ends once its queue is drained.
    pub fn close_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.list) {
            w.shared.lock().closed = true;
            w.shared.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::effects::Effects;
    use crate::types::{NodeId, Peer};

    fn core() -> Core {
        let me = Peer {
            id: NodeId(1),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
        };
        Core::new(Config::default(), me, 1).unwrap()
    }

    fn put(core: &mut Core, key: &str) -> Vec<Notification> {
        let mut out = Effects::default();
        core.put(Duration::ZERO, "n", "t", key, b"v".to_vec(), &mut out)
            .unwrap();
        out.notes
    }

    fn key_of(ev: WatchEvent) -> String {
        match ev {
            WatchEvent::Entry(e) => e.key,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_snapshot_is_not_charged_to_capacity_and_an_overflow_resets_to_the_current_state() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut watchers = Watchers::new(2, tx);
        let mut core = core();
        core.join_network(Duration::ZERO, "n", &mut Effects::default());
        for k in ["a", "b", "c"] {
            put(&mut core, k);
        }
        let options = WatchOptions {
            network: Some("n".into()),
            ..WatchOptions::default()
        };
        let mut w = watchers.register(&core, options);
        for k in ["d", "e"] {
            let notes = put(&mut core, k);
            watchers.dispatch(&core, &notes);
        }
        assert_eq!(watchers.overflows, 0);
        assert_eq!(w.pending(), 5);
        let notes = put(&mut core, "f");
        watchers.dispatch(&core, &notes);
        assert_eq!(watchers.overflows, 1);
        let got: Vec<String> = std::iter::from_fn(|| w.try_next()).map(key_of).collect();
        assert_eq!(got, ["Reset", "a", "b", "c", "d", "e", "f"]);
        // After a reset, the fresh snapshot is again free of charge.
        for k in ["g", "h"] {
            let notes = put(&mut core, k);
            watchers.dispatch(&core, &notes);
        }
        assert_eq!(watchers.overflows, 1);
    }
}
