//! Key rings from the orchestrator (`Cluster.SetKeys`): what the agent holds, how a new ring
//! is applied step by step, and the file that keeps them across restarts. Pure except for
//! [`KeysFile`].
//!
//! A ring is 1 to 3 keys sorted by Lamport tag; its primary (the key that seals gossip or
//! sends ESP) is the second-newest (see [`crate::spec::ring_primary`]). A new gossip ring is
//! applied as: add the keys that are new, switch the primary, remove the keys that are gone
//! ([`gossip_steps`]): networkdb opens with every key of its ring and with a removed key for a
//! short grace, so no packet is lost between nodes that are one step apart.
//!
//! `keys.json` (mode 0600, in the state dir; written crash-safely): `{"gossip": [{"tag": 1,
//! "key": "<hex>"}], "dataplane": [...]}`. At start, a saved gossip ring replaces the
//! `--gossip-key` flags (it is newer than them: it came from SetKeys).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::node::views::RingInfo;
use crate::spec::{TaggedKey, ring_primary};
use crate::state::{StateError, write_atomic};

/// The rings this node holds. A ring is empty when none was ever set (gossip keys from
/// flags have no tags and are not listed here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    pub gossip: Vec<TaggedKey>,
    pub dataplane: Vec<TaggedKey>,
}

/// One change to networkdb's gossip keyring, in the order they must be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipStep {
    Add(Vec<u8>),
    SetPrimary(Vec<u8>),
    Remove(Vec<u8>),
}

/// The steps that turn the gossip keyring holding `current` (bytes; any order) into `next`
/// (sorted by tag): add what is new, make the primary primary, remove what is gone.
pub fn gossip_steps(current: &[Vec<u8>], next: &[TaggedKey]) -> Vec<GossipStep> {
    let mut steps: Vec<GossipStep> = next
        .iter()
        .filter(|k| !current.contains(&k.key))
        .map(|k| GossipStep::Add(k.key.clone()))
        .collect();
    if let Some(p) = ring_primary(next) {
        steps.push(GossipStep::SetPrimary(p.key.clone()));
    }
    steps.extend(
        current
            .iter()
            .filter(|c| !next.iter().any(|k| &k.key == *c))
            .map(|c| GossipStep::Remove(c.clone())),
    );
    steps
}

/// The gossip keys for networkdb at start: primary first (networkdb's convention), then the
/// others by tag.
pub fn startup_order(ring: &[TaggedKey]) -> Vec<Vec<u8>> {
    let Some(primary) = ring_primary(ring) else {
        return Vec::new();
    };
    std::iter::once(primary.key.clone())
        .chain(
            ring.iter()
                .filter(|k| k.tag != primary.tag)
                .map(|k| k.key.clone()),
        )
        .collect()
}

/// A ring as shown: tags, primary, and what a change did.
pub fn info(ring: &[TaggedKey], before: Option<&[TaggedKey]>) -> RingInfo {
    let mut out = RingInfo {
        tags: ring.iter().map(|k| k.tag).collect(),
        primary: ring_primary(ring).map_or(0, |k| k.tag),
        ..Default::default()
    };
    if let Some(b) = before {
        out.added = ring.iter().filter(|k| !b.contains(k)).count() as u32;
        out.pruned = b.iter().filter(|k| !ring.contains(k)).count() as u32;
        out.primary_changed = ring_primary(b).map(|k| k.tag) != ring_primary(ring).map(|k| k.tag);
    }
    out
}

#[derive(Serialize, Deserialize, Default)]
struct FileKey {
    tag: u64,
    key: String,
}

#[derive(Serialize, Deserialize, Default)]
struct FileRings {
    #[serde(default)]
    gossip: Vec<FileKey>,
    #[serde(default)]
    dataplane: Vec<FileKey>,
}

/// `keys.json` in the state dir.
#[derive(Clone, Debug)]
pub struct KeysFile {
    path: PathBuf,
}

impl KeysFile {
    pub const NAME: &'static str = "keys.json";

    pub fn in_dir(dir: &Path) -> KeysFile {
        KeysFile {
            path: dir.join(Self::NAME),
        }
    }

    /// The saved rings (empty when there is no file).
    pub fn load(&self) -> Result<Rings, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Rings::default()),
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let f: FileRings = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let ring = |keys: Vec<FileKey>| -> Result<Vec<TaggedKey>, StateError> {
            let mut out = keys
                .into_iter()
                .map(|k| {
                    Ok(TaggedKey {
                        tag: k.tag,
                        key: hex::decode(&k.key)
                            .ok()
                            .ok_or_else(|| corrupt(format!("key of tag {} is not hex", k.tag)))?,
                    })
                })
                .collect::<Result<Vec<_>, StateError>>()?;
            out.sort_by_key(|k| k.tag);
            Ok(out)
        };
        Ok(Rings {
            gossip: ring(f.gossip)?,
            dataplane: ring(f.dataplane)?,
        })
    }

    /// Replace the file (mode 0600), crash-safely.
    pub fn save(&self, rings: &Rings) -> Result<(), StateError> {
        let ring = |keys: &[TaggedKey]| -> Vec<FileKey> {
            keys.iter()
                .map(|k| FileKey {
                    tag: k.tag,
                    key: hex::encode(&k.key),
                })
                .collect()
        };
        let f = FileRings {
            gossip: ring(&rings.gossip),
            dataplane: ring(&rings.dataplane),
        };
        let bytes = serde_json::to_vec_pretty(&f).expect("rings serialize");
        write_atomic(&self.path, &bytes)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StateError::Io {
                op: "chmod",
                path: self.path.clone(),
                source,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(tag: u64, b: u8) -> TaggedKey {
        TaggedKey {
            tag,
            key: vec![b; 16],
        }
    }

    #[test]
    fn a_rotation_adds_first_switches_the_primary_then_prunes() {
        // {1} -> {1,2}: add 2; the primary stays 1 (second-newest).
        let steps = gossip_steps(&[vec![1; 16]], &[k(1, 1), k(2, 2)]);
        assert_eq!(
            steps,
            [
                GossipStep::Add(vec![2; 16]),
                GossipStep::SetPrimary(vec![1; 16])
            ]
        );
        // {1,2} -> {1,2,3}: add 3, primary 2.
        let steps = gossip_steps(&[vec![1; 16], vec![2; 16]], &[k(1, 1), k(2, 2), k(3, 3)]);
        assert_eq!(
            steps,
            [
                GossipStep::Add(vec![3; 16]),
                GossipStep::SetPrimary(vec![2; 16])
            ]
        );
        // {1,2,3} -> {2,3}: primary 2 stays, 1 pruned last.
        let steps = gossip_steps(
            &[vec![1; 16], vec![2; 16], vec![3; 16]],
            &[k(2, 2), k(3, 3)],
        );
        assert_eq!(
            steps,
            [
                GossipStep::SetPrimary(vec![2; 16]),
                GossipStep::Remove(vec![1; 16])
            ]
        );
    }

    #[test]
    fn at_start_the_primary_comes_first() {
        assert_eq!(
            startup_order(&[k(1, 1), k(2, 2), k(3, 3)]),
            [vec![2; 16], vec![1; 16], vec![3; 16]]
        );
        assert!(startup_order(&[]).is_empty());
    }

    #[test]
    fn info_counts_what_a_change_did_and_shows_no_key_bytes() {
        let i = info(&[k(2, 2), k(3, 3)], Some(&[k(1, 1), k(2, 2)]));
        assert_eq!(i.tags, [2, 3]);
        assert_eq!(i.primary, 2);
        assert_eq!((i.added, i.pruned, i.primary_changed), (1, 1, true));
    }

    #[test]
    fn rings_survive_the_file_which_only_root_can_read() {
        let d = tempfile::tempdir().unwrap();
        let f = KeysFile::in_dir(d.path());
        assert_eq!(f.load().unwrap(), Rings::default());
        let r = Rings {
            gossip: vec![k(1, 1)],
            dataplane: vec![k(4, 4), k(5, 5)],
        };
        f.save(&r).unwrap();
        assert_eq!(f.load().unwrap(), r);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(KeysFile::NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
