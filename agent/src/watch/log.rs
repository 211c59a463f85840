//! The watch log: the current view, one revision per change, the last changes kept so that a
//! client can resume. Pure: no I/O, no clock.

use std::collections::{BTreeMap, VecDeque};

use proto::pb;

/// The kind of a watched object (ordered as the API's `WatchKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Network,
    Service,
    Endpoint,
    Member,
}

impl Kind {
    /// The API's enum value.
    pub fn to_pb(self) -> pb::WatchKind {
        match self {
            Kind::Network => pb::WatchKind::Network,
            Kind::Service => pb::WatchKind::Service,
            Kind::Endpoint => pb::WatchKind::Endpoint,
            Kind::Member => pb::WatchKind::Member,
        }
    }

    /// From the API's enum value (`None` for UNSPECIFIED or unknown values).
    pub fn from_pb(v: i32) -> Option<Kind> {
        match pb::WatchKind::try_from(v).ok()? {
            pb::WatchKind::Network => Some(Kind::Network),
            pb::WatchKind::Service => Some(Kind::Service),
            pb::WatchKind::Endpoint => Some(Kind::Endpoint),
            pb::WatchKind::Member => Some(Kind::Member),
            pb::WatchKind::Unspecified => None,
        }
    }
}

/// An object's key: its kind and id.
pub type Key = (Kind, String);

/// One watched object, as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Network(pb::Network),
    Service(pb::Service),
    Endpoint(pb::Endpoint),
    Member(pb::Member),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Network(_) => Kind::Network,
            Object::Service(_) => Kind::Service,
            Object::Endpoint(_) => Kind::Endpoint,
            Object::Member(_) => Kind::Member,
        }
    }

    /// The object's id (a member's node id).
    pub fn id(&self) -> &str {
        match self {
            Object::Network(n) => &n.id,
            Object::Service(s) => &s.id,
            Object::Endpoint(e) => &e.id,
            Object::Member(m) => &m.node_id,
        }
    }

    pub fn key(&self) -> Key {
        (self.kind(), self.id().to_string())
    }

    /// The `object` of a `WatchEvent`.
    pub fn to_pb(&self) -> pb::watch_event::Object {
        use pb::watch_event::Object as O;
        match self {
            Object::Network(n) => O::Network(n.clone()),
            Object::Service(s) => O::Service(s.clone()),
            Object::Endpoint(e) => O::Endpoint(e.clone()),
            Object::Member(m) => O::Member(m.clone()),
        }
    }
}

/// One change of the view.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub revision: u64,
    pub key: Key,
    /// `Some`: created or changed (the new object); `None`: deleted.
    pub new: Option<Object>,
    /// The last state before the change (`None` for a creation).
    pub old: Option<Object>,
}

impl Change {
    /// The object the event shows: the new one, or for a delete the last state.
    pub fn object(&self) -> Option<&Object> {
        self.new.as_ref().or(self.old.as_ref())
    }
}

/// The view and its recent changes.
#[derive(Debug)]
pub struct Log {
    epoch: String,
    revision: u64,
    state: BTreeMap<Key, Object>,
    changes: VecDeque<Change>,
    capacity: usize,
}

impl Log {
    /// An empty view at revision 0 of `epoch`, keeping the last `capacity` changes (at
    /// least 1).
    pub fn new(epoch: String, capacity: usize) -> Log {
        Log {
            epoch,
            revision: 0,
            state: BTreeMap::new(),
            changes: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The revision of the last change (0 before any).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Replace the view with `view`; every difference becomes one change with the next
    /// revision (in key order: deletes and puts alike). Returns the number of changes.
    pub fn update(&mut self, view: BTreeMap<Key, Object>) -> usize {
        let mut changes = Vec::new();
        for (k, old) in &self.state {
            if !view.contains_key(k) {
                changes.push((k.clone(), None, Some(old.clone())));
            }
        }
        for (k, new) in &view {
            match self.state.get(k) {
                Some(old) if old == new => {}
                old => changes.push((k.clone(), Some(new.clone()), old.cloned())),
            }
        }
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        let n = changes.len();
        for (key, new, old) in changes {
            self.revision += 1;
            self.changes.push_back(Change {
                revision: self.revision,
                key,
                new,
                old,
            });
            if self.changes.len() > self.capacity {
                self.changes.pop_front();
            }
        }
        self.state = view;
        n
    }

    /// The current view and its revision.
    pub fn snapshot(&self) -> (u64, Vec<Object>) {
        (self.revision, self.state.values().cloned().collect())
    }

    /// Every change after `revision`, in order; `None` when some of them are no longer kept
    /// (or `revision` is from the future): the caller needs a snapshot.
    pub fn since(&self, revision: u64) -> Option<Vec<Change>> {
        if revision > self.revision {
            return None;
        }
        if revision == self.revision {
            return Some(Vec::new());
        }
        let first = self.changes.front()?.revision;
        if revision + 1 < first {
            return None;
        }
        Some(
            self.changes
                .iter()
                .filter(|c| c.revision > revision)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str) -> Object {
        Object::Network(pb::Network {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        })
    }

    fn view(objs: &[Object]) -> BTreeMap<Key, Object> {
        objs.iter().map(|o| (o.key(), o.clone())).collect()
    }

    #[test]
    fn each_difference_of_the_view_is_one_change_with_the_next_revision() {
        let mut log = Log::new("e".into(), 10);
        assert_eq!(log.update(view(&[net("a", "x"), net("b", "y")])), 2);
        assert_eq!(log.revision(), 2);
        assert_eq!(log.update(view(&[net("a", "x"), net("b", "y")])), 0);
        assert_eq!(log.update(view(&[net("a", "x2")])), 2);
        let c = log.since(2).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].key, (Kind::Network, "a".into()));
        assert_eq!(c[0].new, Some(net("a", "x2")));
        assert_eq!(c[0].old, Some(net("a", "x")));
        assert_eq!(c[1].new, None);
        assert_eq!(
            c[1].object(),
            Some(&net("b", "y")),
            "a delete shows the last state"
        );
        assert_eq!(c.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(log.snapshot(), (4, vec![net("a", "x2")]));
    }

    #[test]
    fn changes_are_given_since_a_kept_revision_and_refused_otherwise() {
        let mut log = Log::new("e".into(), 3);
        for i in 0..6 {
            log.update(view(&[net("a", &format!("v{i}"))]));
        }
        assert_eq!(log.revision(), 6);
        assert_eq!(log.since(6).unwrap(), vec![]);
        assert_eq!(log.since(3).unwrap().len(), 3, "4, 5 and 6 are kept");
        assert!(log.since(2).is_none(), "3 is gone: a snapshot is needed");
        assert!(log.since(7).is_none(), "a revision from the future");
        assert!(log.since(0).is_none());
        let fresh = Log::new("e".into(), 3);
        assert_eq!(fresh.since(0).unwrap(), vec![]);
    }
}
