//! The durable-tables file: what [`super::NodeConfig::durable_path`] names.
//!
//! Contract: the core task hands every new state of the durable tables
//! ([`crate::Core::durable_records`]) to [`Persister::submit`]; a dedicated thread writes the
//! newest one crash-safely (temporary file, fsync, rename, fsync of the directory) and reports
//! the generation it wrote. The core task never blocks on the disk: a put or delete on a
//! durable table is answered once the generation that holds it is on disk. At start,
//! [`load`] gives back the records to [`crate::Core::restore`].
//!
//! Format (JSON, readable by people): `{"format": 1, "saved_at_ms": <wall clock>, "records":
//! [{"table", "key", "owner" (16 hex digits), "version", "value" (hex, or null for a
//! tombstone), "ttl_ms" (residual ttl of a tombstone when saved)}]}`. Only cluster-scope
//! tables are durable, so records carry no network.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Error;
use crate::types::{CLUSTER, EntryRecord, NodeId};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File1 {
    format: u32,
    saved_at_ms: u64,
    records: Vec<Row>,
}

#[derive(Serialize, Deserialize)]
struct Row {
    table: String,
    key: String,
    owner: String,
    version: u64,
    value: Option<String>,
    ttl_ms: u64,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Persist {
        path: path.to_path_buf(),
        reason: format!("{reason} (move the file away to start without it)"),
    }
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub records: Vec<EntryRecord>,
    /// How long ago the file was written (wall clock).
    pub age: Duration,
}

/// Read the durable records saved at `path` (none if the file does not exist). Tombstones
/// get their residual ttl minus the time since the save; expired ones are left out.
pub(crate) fn load(path: &Path) -> Result<Loaded, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => {
            return Err(Error::Persist {
                path: path.to_path_buf(),
                reason: format!("read: {e}"),
            });
        }
    };
    let file: File1 = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e))?;
    if file.format != FORMAT {
        return Err(corrupt(path, format!("unknown format {}", file.format)));
    }
    let age_ms = wall_ms().saturating_sub(file.saved_at_ms);
    let mut records = Vec::with_capacity(file.records.len());
    for r in file.records {
        let owner = r
            .owner
            .parse::<NodeId>()
            .map_err(|e| corrupt(path, format!("owner {:?}: {e}", r.owner)))?;
        let value = match &r.value {
            Some(v) => Some(
                hex::decode(v)
                    .ok()
                    .ok_or_else(|| corrupt(path, format!("value of {}", r.key)))?,
            ),
            None => None,
        };
        let ttl_ms = if value.is_none() {
            let left = r.ttl_ms.saturating_sub(age_ms);
            if left == 0 {
                continue;
            }
            left
        } else {
            0
        };
        records.push(EntryRecord {
            network: CLUSTER.to_owned(),
            table: r.table,
            key: r.key,
            owner,
            version: r.version,
            value,
            ttl_ms,
        });
    }
    Ok(Loaded {
        records,
        age: Duration::from_millis(age_ms),
    })
}

/// Write `records` to `path` crash-safely.
pub(crate) fn save(path: &Path, records: &[EntryRecord]) -> std::io::Result<()> {
    let file = File1 {
        format: FORMAT,
        saved_at_ms: wall_ms(),
        records: records
            .iter()
            .map(|r| Row {
                table: r.table.clone(),
                key: r.key.clone(),
                owner: r.owner.to_string(),
                version: r.version,
                value: r.value.as_deref().map(hex::encode),
                ttl_ms: r.ttl_ms,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The newest generation written, and the error of the last write if it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub generation: u64,
    pub error: Option<String>,
}

/// The writer thread and the core task's view of it.
#[derive(Debug)]
pub(crate) struct Persister {
    path: PathBuf,
    jobs: Option<mpsc::Sender<(u64, Vec<EntryRecord>)>>,
    pub written: watch::Receiver<Written>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Generation last handed to the thread.
    pub submitted: u64,
}

impl Persister {
    /// Start the writer thread for `path`; `generation` is the core's current
    /// [`crate::Core::durable_changes`] (what was loaded needs no write).
    pub fn start(path: PathBuf, generation: u64) -> Result<Persister, Error> {
        let (jobs, rx) = mpsc::channel::<(u64, Vec<EntryRecord>)>();
        let (tx, written) = watch::channel(Written {
            generation,
            error: None,
        });
        let target = path.clone();
        let thread = std::thread::Builder::new()
            .name("networkdb-persist".into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    // Only the newest state matters.
                    while let Ok(newer) = rx.try_recv() {
                        job = newer;
                    }
                    let (generation, records) = job;
                    let error = save(&target, &records).err().map(|e| {
                        tracing::error!(path = %target.display(), error = %e, "cannot save the durable tables");
                        format!("{}: {e}", target.display())
                    });
                    let _ = tx.send(Written { generation, error });
                }
            })?;
        Ok(Persister {
            path,
            jobs: Some(jobs),
            written,
            thread: Some(thread),
            submitted: generation,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hand a new state to the writer.
    pub fn submit(&mut self, generation: u64, records: Vec<EntryRecord>) {
        if let Some(j) = &self.jobs {
            let _ = j.send((generation, records));
        }
        self.submitted = generation;
    }

    /// Whether the writer has not caught up with the last submitted generation.
    pub fn busy(&self) -> bool {
        self.written.borrow().generation < self.submitted
    }

    /// Stop the writer after it wrote what was submitted (bounded by the caller).
    pub fn finish(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: Option<&[u8]>, ttl_ms: u64) -> EntryRecord {
        EntryRecord {
            network: CLUSTER.to_owned(),
            table: "networks".into(),
            key: key.into(),
            owner: NodeId(0xab),
            version: 42,
            value: value.map(<[u8]>::to_vec),
            ttl_ms,
        }
    }

    #[test]
    fn records_survive_a_save_and_a_load_and_no_temp_file_is_left() {
        let dir = std::env::temp_dir().join(format!("ndb-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("durable.json");
        let records = vec![rec("a", Some(b"\x00\xffx"), 0), rec("b", None, 3_600_000)];
        save(&path, &records).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.records[0], records[0]);
        assert_eq!(loaded.records[1].value, None);
        assert!(loaded.records[1].ttl_ms > 3_500_000 && loaded.records[1].ttl_ms <= 3_600_000);
        assert!(!dir.join("durable.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_empty_and_a_corrupt_one_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("ndb-persist-c-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("durable.json");
        assert!(load(&path).unwrap().records.is_empty());
        fs::write(&path, b"{not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("durable.json"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_expired_tombstone_is_left_out_at_load() {
        let dir = std::env::temp_dir().join(format!("ndb-persist-e-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("durable.json");
        save(&path, &[rec("gone", None, 1)]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(load(&path).unwrap().records.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
