//! The timer queue of the core task: deadlines in a min-heap, ties in scheduling order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

use crate::effects::Timer;

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Timers waiting for their deadline. Every timer pushed is popped exactly once.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl TimerQueue {
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            timer,
        });
    }

    /// The earliest deadline, if any timer is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|s| s.at)
    }

    /// The earliest timer if its deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek()?.at <= now {
            self.heap.pop().map(|s| s.timer)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_pop_by_deadline_then_in_scheduling_order() {
        let mut q = TimerQueue::default();
        let t0 = Instant::now();
        q.push(t0 + Duration::from_secs(2), Timer::Sync);
        q.push(t0, Timer::Flush);
        q.push(t0, Timer::Gossip);
        assert_eq!(q.next_deadline(), Some(t0));
        assert_eq!(q.pop_due(t0), Some(Timer::Flush));
        assert_eq!(q.pop_due(t0), Some(Timer::Gossip));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(3)), Some(Timer::Sync));
    }
}
