//! Anti-entropy: periodic and on-(re)join syncs with one member per network, digest first
//! (per owner, then buckets, then entries), over the stream transport; what is answered, and
//! to whom.

use super::*;

impl Core {
    pub(super) fn periodic_sync(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.stats.sync_rounds += 1;
        let mut by_peer: BTreeMap<SocketAddr, Vec<NetworkId>> = BTreeMap::new();
        let nets: Vec<NetworkId> = self.nets.keys().cloned().collect();
        for nid in nets {
            if let Some(peer) = self.random_members(&nid, 1).pop() {
                by_peer.entry(peer).or_default().push(nid);
            }
        }
        for (peer, nets) in by_peer {
            self.send_digests(now, peer, &nets, rt);
        }
    }

    /// Sync every network with a random member of it (on join and rejoin).
    pub(super) fn sync_all(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.periodic_sync(now, rt);
    }

    pub(super) fn send_digests(
        &mut self,
        _now: Duration,
        peer: SocketAddr,
        networks: &[NetworkId],
        rt: &mut impl Runtime,
    ) {
        let digests = networks
            .iter()
            .filter_map(|nid| {
                self.nets.get(nid).map(|n| NetworkDigest {
                    network: nid.clone(),
                    owners: n.store.digests(),
                })
            })
            .collect();
        let msg = wire::Sync {
            from: self.me.id,
            addr: Some(self.me.addr),
            clock: self.clock,
            digests,
            members_hash: Some(self.members_hash()),
            ..Default::default()
        };
        self.send_sync(peer, msg, rt);
    }

    /// Anti-entropy always rides the reliable transport: it is what guarantees convergence
    /// whatever gossip lost, and one lost step of an exchange would otherwise cost a whole
    /// sync period (with 10% loss, about a quarter of all three-step exchanges).
    ///
    /// Every message carries this node's own attachment records of the networks it is about,
    /// so the receiver never refuses to answer for lack of a membership fact it lost.
    pub(super) fn send_sync(
        &mut self,
        peer: SocketAddr,
        mut msg: wire::Sync,
        rt: &mut impl Runtime,
    ) {
        let networks: BTreeSet<&str> = msg
            .digests
            .iter()
            .map(|d| d.network.as_str())
            .chain(msg.want_all.iter().map(|w| w.network.as_str()))
            .chain(msg.buckets.iter().map(|b| b.network.as_str()))
            .chain(msg.want_buckets.iter().map(|b| b.network.as_str()))
            .filter(|n| *n != CLUSTER)
            .collect();
        let cluster = &self.nets[CLUSTER];
        let attachments: Vec<EntryRecord> = networks
            .into_iter()
            .filter_map(|n| {
                let key = attach_key(n, self.me.id);
                cluster
                    .store
                    .get(ATTACH_TABLE, &key)
                    .map(|s| to_record(&CLUSTER.to_owned(), ATTACH_TABLE, &key, s, Duration::ZERO))
            })
            .filter(|r| r.value.is_some())
            .collect();
        msg.entries.extend(attachments);
        let frame = wire::encode(&Message::Sync(msg));
        self.stats.sync_out += 1;
        rt.send(peer, Transport::Stream, frame);
    }

    pub(super) fn handle_sync(
        &mut self,
        now: Duration,
        from: SocketAddr,
        s: wire::Sync,
        rt: &mut impl Runtime,
    ) {
        self.witness(s.clock);
        // Replies go to the address the request came from: its IP, with the sender's gossip
        // port (`from` is a stream's ephemeral port; the sender may not be a member we know
        // yet, it just joined). Never to an address the frame merely names.
        let reply_to = self
            .addr_of(s.from)
            .or(s.addr)
            .map(|a| SocketAddr::new(from.ip(), a.port()));
        let asker = s.from;
        if !s.members.is_empty() {
            let mut acc = foca::AccumulatingRuntime::new();
            if let Err(e) = self.foca.apply_many(s.members.into_iter(), false, &mut acc) {
                tracing::debug!(error = %e, "membership state from a peer");
            }
            self.drain_foca(now, acc, rt);
        }
        let send_members =
            s.want_members || s.members_hash.is_some_and(|h| h != self.members_hash());
        let want_members = s.members_hash.is_some_and(|h| h != self.members_hash());
        // Entries anti-entropy brings are relayed once (one gossip round to `fanout`
        // members, whose relays then spread them as usual), newest first and at most
        // SYNC_RELAY_MAX per message: a repair of a few lost writes reaches the whole network
        // within the sync period, while a bulk catch-up (a joining node learning everything,
        // which the others already hold) does not turn into a broadcast of the whole table.
        let mut entries = s.entries;
        entries.sort_by_key(|r| std::cmp::Reverse((r.version, r.owner)));
        for (n, rec) in entries.into_iter().enumerate() {
            let relay = if n < SYNC_RELAY_MAX {
                Relay::Once
            } else {
                Relay::No
            };
            self.apply_remote(now, rec, relay, rt);
        }
        let mut reply = wire::Sync {
            from: self.me.id,
            addr: Some(self.me.addr),
            clock: self.clock,
            want_members,
            members: if send_members {
                self.membership_state()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        for d in s.digests {
            if !self.serves(&d.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            let Some(net) = self.nets.get(&d.network) else {
                continue;
            };
            let theirs: BTreeMap<NodeId, _> = d.owners.iter().map(|o| (o.owner, *o)).collect();
            for mine in net.store.digests() {
                match theirs.get(&mine.owner) {
                    None => reply
                        .entries
                        .extend(net.store.records_of(&d.network, mine.owner, None, now)),
                    Some(t) if *t != mine => reply.buckets.push(OwnerBuckets {
                        network: d.network.clone(),
                        owner: mine.owner,
                        buckets: net.store.buckets(mine.owner),
                    }),
                    Some(_) => {}
                }
            }
            for t in d
                .owners
                .iter()
                .filter(|t| !net.store.owners.contains_key(&t.owner))
            {
                reply.want_all.push(OwnerRef {
                    network: d.network.clone(),
                    owner: t.owner,
                });
            }
        }
        for w in s.want_all {
            if !self.serves(&w.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            if let Some(net) = self.nets.get(&w.network) {
                reply
                    .entries
                    .extend(net.store.records_of(&w.network, w.owner, None, now));
            }
        }
        for ob in s.buckets {
            if !self.serves(&ob.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            let Some(net) = self.nets.get(&ob.network) else {
                continue;
            };
            let theirs: BTreeMap<u16, _> = ob.buckets.iter().map(|b| (b.bucket, *b)).collect();
            let mine: BTreeMap<u16, _> = net
                .store
                .buckets(ob.owner)
                .into_iter()
                .map(|b| (b.bucket, b))
                .collect();
            let differing: Vec<u16> = theirs
                .keys()
                .chain(mine.keys())
                .copied()
                .collect::<BTreeSet<u16>>()
                .into_iter()
                .filter(|b| theirs.get(b) != mine.get(b))
                .collect();
            if differing.is_empty() {
                continue;
            }
            reply.entries.extend(net.store.records_of(
                &ob.network,
                ob.owner,
                Some(&differing),
                now,
            ));
            let they_have: Vec<u16> = differing
                .iter()
                .copied()
                .filter(|b| theirs.contains_key(b))
                .collect();
            if !they_have.is_empty() {
                reply.want_buckets.push(BucketRef {
                    network: ob.network,
                    owner: ob.owner,
                    buckets: they_have,
                });
            }
        }
        for wb in s.want_buckets {
            if !self.serves(&wb.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            if let Some(net) = self.nets.get(&wb.network) {
                reply.entries.extend(net.store.records_of(
                    &wb.network,
                    wb.owner,
                    Some(&wb.buckets),
                    now,
                ));
            }
        }
        if reply.is_empty() {
            return;
        }
        match reply_to {
            Some(to) => self.send_sync(to, reply, rt),
            None => {
                self.stats.sync_refused += 1;
                tracing::debug!(%from, "sync from a peer that named no gossip address: not answered");
            }
        }
    }

    /// Whether anti-entropy answers `asker` about `network`: the cluster scope for anyone
    /// (every member is in it), another network only for a node attached to it. A request
    /// carries the asker's attachments (see [`Core::send_sync`]), so a fresh attachment is
    /// known by the time its first request is answered.
    pub(super) fn serves(&self, network: &str, asker: NodeId) -> bool {
        network == CLUSTER
            || self
                .attached
                .get(network)
                .is_some_and(|nodes| nodes.contains(&asker))
    }
}
