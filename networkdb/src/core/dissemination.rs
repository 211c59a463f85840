//! Dissemination: eager push of own writes to `fanout` members, bounded gossip rounds,
//! packing into datagrams, and the choice of members to send to.

use super::*;

impl Core {
    pub(super) fn budget(&self, network: &str) -> u32 {
        let n = self.candidates(network).len() as f64 + 1.0;
        let rounds = (n + 1.0).log10().ceil().max(1.0) as u32;
        (self.config.retransmit_mult * rounds).max(1)
    }

    pub(super) fn schedule_flush(&mut self, rt: &mut impl Runtime) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            rt.schedule(Duration::ZERO, Timer::Flush);
        }
    }

    /// Schedule a gossip round if anything is queued for a network that has live members.
    /// Called after writes, rounds, and whenever a member or an attachment shows up.
    pub(super) fn schedule_gossip(&mut self, rt: &mut impl Runtime) {
        if !self.gossip_scheduled
            && self
                .nets
                .iter()
                .any(|(id, n)| !n.queue.is_empty() && self.has_candidates(id))
        {
            self.gossip_scheduled = true;
            rt.schedule(self.config.gossip_interval, Timer::Gossip);
        }
    }

    /// Eager push: what was queued since the last flush goes to `fanout` members at once.
    pub(super) fn flush(&mut self, now: Duration, rt: &mut impl Runtime) {
        // A network without live members keeps its queue (and its budget) until one shows up.
        self.send_queued(now, |q| q.has_eager(), |q| q.take_eager(), rt);
    }

    /// A gossip round: every network with queued entries sends them to `fanout` members.
    pub(super) fn gossip_round(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.stats.gossip_rounds += 1;
        self.send_queued(now, |q| !q.is_empty(), |q| q.take_round(), rt);
    }

    /// For every network whose queue `has` something and that has live members: `take` keys
    /// from the queue and send them; then schedule the next round if anything is left.
    fn send_queued(
        &mut self,
        now: Duration,
        has: impl Fn(&Queue) -> bool,
        take: impl Fn(&mut Queue) -> Vec<(String, String)>,
        rt: &mut impl Runtime,
    ) {
        let networks: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(id, n)| has(&n.queue) && self.has_candidates(id))
            .map(|(id, _)| id.clone())
            .collect();
        for nid in networks {
            let keys = self
                .nets
                .get_mut(&nid)
                .map(|n| take(&mut n.queue))
                .unwrap_or_default();
            self.send_keys(now, &nid, &keys, rt);
        }
        self.schedule_gossip(rt);
    }

    /// Send the current state of `keys` of a network to `fanout` random members, packed into
    /// as few datagrams as fit.
    pub(super) fn send_keys(
        &mut self,
        now: Duration,
        network: &str,
        keys: &[(String, String)],
        rt: &mut impl Runtime,
    ) {
        if keys.is_empty() {
            return;
        }
        let targets = self.random_members(network, self.config.fanout);
        if targets.is_empty() {
            return;
        }
        let Some(net) = self.nets.get(network) else {
            return;
        };
        let nid = network.to_owned();
        let records: Vec<EntryRecord> = keys
            .iter()
            .filter_map(|(t, k)| net.store.get(t, k).map(|s| to_record(&nid, t, k, s, now)))
            .collect();
        let frames = self.pack_gossip(records);
        for peer in &targets {
            for (transport, frame) in &frames {
                self.stats.gossip_out += 1;
                rt.send(*peer, *transport, frame.clone());
            }
        }
    }

    /// Pack records into gossip frames of at most `max_packet` bytes; a record too big for a
    /// datagram travels alone by stream.
    pub(super) fn pack_gossip(&self, records: Vec<EntryRecord>) -> Vec<(Transport, Vec<u8>)> {
        // Frame overhead: tag, version, enum tag, from, clock (varints), vec length.
        const OVERHEAD: usize = 2 + 1 + 10 + 10 + 5;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut size = OVERHEAD;
        let encode = |entries: Vec<EntryRecord>| {
            wire::encode(&Message::Gossip(Gossip {
                from: self.me.id,
                clock: self.clock,
                entries,
            }))
        };
        for rec in records {
            let len = postcard::to_stdvec(&rec).map_or(usize::MAX, |v| v.len());
            if OVERHEAD + len > self.config.max_packet {
                out.push((Transport::Stream, encode(vec![rec])));
                continue;
            }
            if size + len > self.config.max_packet {
                out.push((Transport::Datagram, encode(std::mem::take(&mut batch))));
                size = OVERHEAD;
            }
            size += len;
            batch.push(rec);
        }
        if !batch.is_empty() {
            out.push((Transport::Datagram, encode(batch)));
        }
        out
    }

    pub(super) fn has_candidates(&self, network: &str) -> bool {
        let up = |id: &NodeId| self.nodes.get(id).is_some_and(|n| n.up && n.peer.is_some());
        if network == CLUSTER {
            self.nodes.keys().any(up)
        } else {
            self.attached.get(network).is_some_and(|s| s.iter().any(up))
        }
    }

    /// Live members of a network other than self (every live node for the cluster scope).
    pub(super) fn candidates(&self, network: &str) -> Vec<NodeId> {
        let up = |id: &NodeId| self.nodes.get(id).is_some_and(|n| n.up && n.peer.is_some());
        if network == CLUSTER {
            self.nodes.keys().filter(|id| up(id)).copied().collect()
        } else {
            self.attached
                .get(network)
                .map(|s| s.iter().filter(|id| up(id)).copied().collect())
                .unwrap_or_default()
        }
    }

    pub(super) fn random_members(&mut self, network: &str, n: usize) -> Vec<SocketAddr> {
        let mut c = self.candidates(network);
        c.shuffle(&mut self.rng);
        c.truncate(n);
        c.iter()
            .filter_map(|id| {
                self.nodes
                    .get(id)
                    .and_then(|s| s.peer.as_ref())
                    .map(|p| p.addr)
            })
            .collect()
    }

    pub(super) fn addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes
            .get(&id)
            .and_then(|n| n.peer.as_ref())
            .map(|p| p.addr)
    }
}
