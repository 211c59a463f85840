//! The outcome of applying a list of operations.

use std::time::Duration;

use crate::{Error, Op};

/// What [`crate::Executor::apply`] or [`crate::Executor::reconcile`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations that succeeded, in order.
    pub applied: Vec<Op>,
    /// Operations that failed, in order, with why. A failed op does not stop the others; the
    /// next reconcile plans it again.
    pub failed: Vec<OpFailure>,
    /// Wall time of the whole call (reading, planning and applying).
    pub elapsed: Duration,
}

/// One failed operation.
#[derive(Debug)]
pub struct OpFailure {
    /// The operation.
    pub op: Op,
    /// Why it failed.
    pub error: Error,
}

impl Report {
    /// Number of operations attempted (applied + failed). Zero means the kernel already
    /// matched the desired state.
    pub fn ops(&self) -> usize {
        self.applied.len() + self.failed.len()
    }

    /// `true` when nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// Turns a report with failures into the first failure's error (for callers that want
    /// all-or-error semantics).
    pub fn into_result(mut self) -> Result<Report, Error> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(self.failed.remove(0).error)
        }
    }
}
