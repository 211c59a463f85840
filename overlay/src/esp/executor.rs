//! The ESP executor: reads and writes xfrm SAs and policies (netlink) and the guard table
//! (`nft`) of one host namespace, on a dedicated thread.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::xfrm::{self, EEXIST, ENOENT, ESRCH, RequestError, XfrmSocket};
use super::{EspActual, EspDesired, EspOp, EspSession, SpiConflict, desired_xfrm, guard, plan_esp};
use crate::Error;
use crate::netns::{self, THREAD_SELF_NS};

/// What [`EspExecutor::apply`] or [`EspExecutor::reconcile`] did.
#[derive(Debug, Default)]
pub struct EspReport {
    /// Operations that succeeded, in order.
    pub applied: Vec<EspOp>,
    /// Operations that failed, in order, with why (the next reconcile plans them again).
    pub failed: Vec<EspOpFailure>,
    /// SPI collisions of the desired state (reconcile only; see [`SpiConflict`]).
    pub conflicts: Vec<SpiConflict>,
    /// Wall time of the call.
    pub elapsed: Duration,
}

/// One failed operation.
#[derive(Debug)]
pub struct EspOpFailure {
    /// The operation.
    pub op: EspOp,
    /// Why it failed.
    pub error: Error,
}

impl EspReport {
    /// Operations attempted; zero means the kernel already matched.
    pub fn ops(&self) -> usize {
        self.applied.len() + self.failed.len()
    }

    /// `true` when nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

enum Job {
    ReadActual(oneshot::Sender<Result<EspActual, Error>>),
    Apply(Vec<EspOp>, oneshot::Sender<EspReport>),
    Reconcile(Box<EspDesired>, oneshot::Sender<Result<EspReport, Error>>),
}

/// Applies the ESP dataplane of one host namespace (the one holding the VXLAN sockets and
/// the underlay routes).
///
/// Owns the SAs and policy templates with its reqid and the table `inet swarmnet_esp`; never
/// touches other xfrm objects. Kernel work runs on a dedicated thread that stays in the host
/// namespace (`nft` runs as its child, so in that namespace too); calls are serialised there.
/// `Send + Sync`. Dropping it waits for the call in progress and stops the thread; kernel
/// state stays (a new executor with the same reqid adopts it).
///
/// Contract for the agent:
/// * At start: [`probe`](super::probe); without support, refuse encrypted networks.
/// * Before creating the sandbox of an encrypted network (before `Executor::reconcile` makes
///   its VXLAN device), reconcile with the network in [`EspDesired::guard`]; remove it from
///   `guard` only after the sandbox is gone.
/// * On every change of keys (SetKeys), of nodes sharing an encrypted network, of node
///   addresses or generations, and periodically: [`reconcile`](Self::reconcile).
/// * Keep a node that is down but not gone (its gossip entries suspended) in `peers`: its
///   SAs must outlive a failure-detector flap (see [`EspSession`]).
/// * Right after a restart, until the tables are complete: set
///   [`EspDesired::keep_unlisted`].
#[derive(Debug)]
pub struct EspExecutor {
    reqid: u32,
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl EspExecutor {
    /// An executor for the calling thread's current network namespace, whose former peers
    /// keep their SAs for [`DEFAULT_LINGER`](super::DEFAULT_LINGER).
    pub fn new(reqid: u32) -> Result<EspExecutor, Error> {
        let home = netns::open(Path::new(THREAD_SELF_NS))?;
        Self::spawn(home, THREAD_SELF_NS.into(), reqid, EspSession::default())
    }

    /// An executor for the host whose network namespace is `host_netns`.
    pub fn new_in(host_netns: impl AsRef<Path>, reqid: u32) -> Result<EspExecutor, Error> {
        Self::new_in_with(host_netns, reqid, EspSession::default())
    }

    /// [`EspExecutor::new_in`] with its own session (e.g. another linger).
    pub fn new_in_with(
        host_netns: impl AsRef<Path>,
        reqid: u32,
        session: EspSession,
    ) -> Result<EspExecutor, Error> {
        let path = host_netns.as_ref();
        let home = netns::open(path)?;
        Self::spawn(home, path.to_path_buf(), reqid, session)
    }

    fn spawn(
        home: File,
        home_path: PathBuf,
        reqid: u32,
        session: EspSession,
    ) -> Result<EspExecutor, Error> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("esp-{reqid:08x}"))
            .spawn(move || match netns::enter(&home, &home_path) {
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
                Ok(()) => {
                    let _ = ready_tx.send(Ok(()));
                    drop(home);
                    Worker { reqid, session }.run(rx);
                }
            })
            .map_err(|e| Error::io("spawn thread of", "ESP executor", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(EspExecutor {
                reqid,
                tx: Some(tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(Error::ExecutorGone(
                "the ESP thread died while starting".into(),
            )),
        }
    }

    /// The reqid marking what this executor owns.
    pub fn reqid(&self) -> u32 {
        self.reqid
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| gone()),
            None => Err(gone()),
        }
    }

    /// Reads our SAs, policies and the guard table.
    pub async fn read_actual(&self) -> Result<EspActual, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::ReadActual(tx))?;
        rx.await.map_err(|_| gone())?
    }

    /// Applies `ops` in order; each is attempted even when an earlier one failed.
    pub async fn apply(&self, ops: Vec<EspOp>) -> Result<EspReport, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Apply(ops, tx))?;
        rx.await.map_err(|_| gone())
    }

    /// Validate, [`EspSession::prepare`] (former peers linger, restarted senders are
    /// renewed), read actual, [`plan_esp`], apply. Idempotent: after a call without
    /// failures, an immediate second call attempts zero ops. `Err` only when nothing was
    /// applied (invalid desired state, unreadable state, executor gone).
    pub async fn reconcile(&self, desired: &EspDesired) -> Result<EspReport, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Reconcile(Box::new(desired.clone()), tx))?;
        rx.await.map_err(|_| gone())?
    }

    /// [`read_actual`](Self::read_actual) for synchronous callers (not from inside an async
    /// runtime).
    pub fn read_actual_blocking(&self) -> Result<EspActual, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::ReadActual(tx))?;
        rx.blocking_recv().map_err(|_| gone())?
    }

    /// [`apply`](Self::apply) for synchronous callers.
    pub fn apply_blocking(&self, ops: Vec<EspOp>) -> Result<EspReport, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Apply(ops, tx))?;
        rx.blocking_recv().map_err(|_| gone())
    }

    /// [`reconcile`](Self::reconcile) for synchronous callers.
    pub fn reconcile_blocking(&self, desired: &EspDesired) -> Result<EspReport, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Reconcile(Box::new(desired.clone()), tx))?;
        rx.blocking_recv().map_err(|_| gone())?
    }
}

impl Drop for EspExecutor {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gone() -> Error {
    Error::ExecutorGone("the ESP executor stopped or panicked".into())
}

fn xerr(op: &'static str, object: String, e: RequestError) -> Error {
    let errno = match e {
        RequestError::Errno(n) => Some(n),
        RequestError::Decode(_) => None,
    };
    Error::Xfrm {
        op,
        object,
        errno,
        reason: e.to_string(),
    }
}

struct Worker {
    reqid: u32,
    session: EspSession,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::ReadActual(tx) => {
                    let _ = tx.send(self.read_actual());
                }
                Job::Apply(ops, tx) => {
                    let start = Instant::now();
                    let mut r = self.apply(ops);
                    r.elapsed = start.elapsed();
                    let _ = tx.send(r);
                }
                Job::Reconcile(d, tx) => {
                    let start = Instant::now();
                    let r = d.validate().and_then(|()| {
                        let d = self.session.prepare(&d, start);
                        let actual = self.read_actual()?;
                        let ops = plan_esp(&d, &actual);
                        self.session.planned();
                        let mut r = self.apply(ops);
                        r.conflicts = desired_xfrm(&d, self.reqid).conflicts;
                        r.elapsed = start.elapsed();
                        Ok(r)
                    });
                    let _ = tx.send(r);
                }
            }
        }
    }

    fn socket(&self) -> Result<XfrmSocket, Error> {
        XfrmSocket::open().map_err(|e| xerr("open xfrm socket", "in the host namespace".into(), e))
    }

    fn read_actual(&self) -> Result<EspActual, Error> {
        let mut sock = self.socket()?;
        let mut actual = EspActual::empty(self.reqid);
        let sas = sock
            .dump(xfrm::dump_sas())
            .map_err(|e| xerr("dump", "xfrm states".into(), e))?;
        for m in sas {
            if let netlink_packet_xfrm::XfrmMessage::AddSa(m) = m
                && let Some(s) = xfrm::parse_sa(&m, self.reqid)
            {
                actual.sas.push(s);
            }
        }
        let pols = sock
            .dump(xfrm::dump_policies())
            .map_err(|e| xerr("dump", "xfrm policies".into(), e))?;
        for m in pols {
            if let netlink_packet_xfrm::XfrmMessage::AddPolicy(m) = m
                && let Some(p) = xfrm::parse_policy(&m, self.reqid)
            {
                actual.policies.push(p);
            }
        }
        actual.guard = guard::read_guard()?;
        Ok(actual)
    }

    fn apply(&self, ops: Vec<EspOp>) -> EspReport {
        let mut report = EspReport::default();
        let mut sock = match self.socket() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("ESP executor: {e}");
                None
            }
        };
        for op in ops {
            let result = match &mut sock {
                Some(s) => apply_one(s, &op, self.reqid),
                None => self
                    .socket()
                    .and_then(|mut s| apply_one(&mut s, &op, self.reqid)),
            };
            match result {
                Ok(()) => {
                    tracing::debug!("applied {op}");
                    report.applied.push(op);
                }
                Err(error) => {
                    tracing::warn!("failed {op}: {error}");
                    report.failed.push(EspOpFailure { op, error });
                }
            }
        }
        report
    }
}

fn ignore(r: Result<(), RequestError>, codes: &[i32]) -> Result<(), RequestError> {
    match r {
        Err(RequestError::Errno(n)) if codes.contains(&n) => Ok(()),
        other => other,
    }
}

fn apply_one(sock: &mut XfrmSocket, op: &EspOp, reqid: u32) -> Result<(), Error> {
    let sa_obj = |src, dst, spi: u32| format!("{src} -> {dst} spi {spi:#010x}");
    match op {
        EspOp::SetGuard { rules } => guard::apply_guard_script(&guard::render_guard(rules)),
        EspOp::DeleteGuard => guard::apply_guard_script(&guard::render_guard_delete()),
        EspOp::AddSa(s) => match sock.request(xfrm::new_sa(s)) {
            Err(RequestError::Errno(EEXIST)) => {
                // Someone made it meanwhile: replace, never trust what we did not write.
                ignore(sock.request(xfrm::del_sa(s.src, s.dst, s.spi)), &[ESRCH])
                    .and_then(|()| sock.request(xfrm::new_sa(s)))
                    .map_err(|e| xerr("replace sa", sa_obj(s.src, s.dst, s.spi), e))
            }
            r => r.map_err(|e| xerr("add sa", sa_obj(s.src, s.dst, s.spi), e)),
        },
        EspOp::ReplaceSa(s) => ignore(sock.request(xfrm::del_sa(s.src, s.dst, s.spi)), &[ESRCH])
            .and_then(|()| sock.request(xfrm::new_sa(s)))
            .map_err(|e| xerr("replace sa", sa_obj(s.src, s.dst, s.spi), e)),
        EspOp::DeleteSa { src, dst, spi } => {
            ignore(sock.request(xfrm::del_sa(*src, *dst, *spi)), &[ESRCH])
                .map_err(|e| xerr("delete sa", sa_obj(*src, *dst, *spi), e))
        }
        EspOp::ResetReplay { src, dst, spi } => sock
            .request_replace(xfrm::reset_replay(*src, *dst, *spi, reqid))
            .map_err(|e| xerr("reset replay state of sa", sa_obj(*src, *dst, *spi), e)),
        EspOp::SetPolicy(p) => sock.request(xfrm::set_policy(p)).map_err(|e| {
            xerr(
                "set policy",
                format!("out {} -> {} udp dport {}", p.src, p.dst, p.port),
                e,
            )
        }),
        EspOp::DeletePolicy {
            dir,
            selector,
            mark,
        } => ignore(
            sock.request(xfrm::del_policy(*dir, selector, *mark)),
            &[ENOENT, ESRCH],
        )
        .map_err(|e| {
            xerr(
                "delete policy",
                format!("dir {dir} {} -> {}", selector.src, selector.dst),
                e,
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::EspExecutor;

    #[test]
    fn the_esp_executor_can_be_shared_between_threads_and_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<EspExecutor>();
    }
}
