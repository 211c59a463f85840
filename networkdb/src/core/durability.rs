//! Durable tables (see [`crate::Config::durable_tables`]): the change counter the runtime
//! persists on, the records it saves, and their restore after a restart.

use super::*;

impl Core {
    /// A counter bumped on every change of a durable entry (stored, replaced, expired): the
    /// owner of the core persists [`Core::durable_records`] whenever it moved.
    pub fn durable_changes(&self) -> u64 {
        self.durable_changes
    }

    /// Every stored record of the durable tables, tombstones included, with residual ttls as
    /// of `now`: what a node persists so that it can [`Core::restore`] them after a restart.
    pub fn durable_records(&self, now: Duration) -> Vec<EntryRecord> {
        let net = &self.nets[CLUSTER];
        net.store
            .entries
            .iter()
            .filter(|(_, s)| s.durable)
            .map(|((t, k), s)| to_record(&CLUSTER.to_owned(), t, k, s, now))
            .collect()
    }

    /// Put back durable records persisted by an earlier life of this node (or by any node):
    /// each is applied with its original owner and version, as if a peer had sent it, so a
    /// newer write or delete made anywhere meanwhile wins when anti-entropy meets it, and
    /// nothing is re-asserted over it. Records of non-durable tables are ignored. Returns how
    /// many were taken. Call before [`Core::join`].
    pub fn restore(
        &mut self,
        now: Duration,
        records: Vec<EntryRecord>,
        rt: &mut impl Runtime,
    ) -> usize {
        let mut taken = 0;
        for rec in records {
            if !self.config.is_durable(&rec.network, &rec.table) {
                continue;
            }
            let before = self.durable_changes;
            self.apply_remote(now, rec, Relay::No, rt);
            if self.durable_changes != before {
                taken += 1;
            }
        }
        taken
    }
}
