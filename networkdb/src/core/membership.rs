//! Membership: foca's notifications turned into members up and down, announces to seeds,
//! membership anti-entropy (view hashes and state exchange), the cut-off while foca is
//! disconnected.

use super::*;

impl Core {
    /// Announce to the seeds; while foca is disconnected also to a few known members (the
    /// seeds may be gone, or this node may be the only seed).
    pub(super) fn announce_seeds(&mut self, now: Duration, rt: &mut impl Runtime) {
        let mut acc = foca::AccumulatingRuntime::new();
        let mut targets = self.seeds.clone();
        if !self.foca_active {
            let mut known: Vec<SocketAddr> = self
                .nodes
                .values()
                .filter_map(|n| n.peer.as_ref().map(|p| p.addr))
                .filter(|a| !targets.contains(a))
                .collect();
            known.shuffle(&mut self.rng);
            targets.extend(known.into_iter().take(3));
        }
        for seed in targets {
            let dst = Peer {
                id: NodeId::UNKNOWN,
                addr: seed,
                generation: 0,
            };
            if let Err(e) = self.foca.announce(dst, &mut acc) {
                tracing::debug!(%seed, error = %e, "announce");
            }
        }
        self.drain_foca(now, acc, rt);
    }

    pub(super) fn drain_foca(
        &mut self,
        now: Duration,
        mut acc: foca::AccumulatingRuntime<Peer>,
        rt: &mut impl Runtime,
    ) {
        while let Some((to, data)) = acc.to_send() {
            self.stats.foca_out += 1;
            rt.send(to.addr, Transport::Datagram, wire::encode_foca(&data));
        }
        while let Some((after, t)) = acc.to_schedule() {
            rt.schedule(after, Timer::Foca(t));
        }
        while let Some(n) = acc.to_notify() {
            self.on_foca(now, n, rt);
        }
    }

    pub(super) fn on_foca(
        &mut self,
        now: Duration,
        n: OwnedNotification<Peer>,
        rt: &mut impl Runtime,
    ) {
        match n {
            OwnedNotification::MemberUp(peer) => self.member_up(now, peer, rt),
            OwnedNotification::MemberDown(peer) => self.member_down(now, peer, rt),
            OwnedNotification::Rename(old, new) => {
                if old.id != new.id {
                    self.member_down(now, old, rt);
                } else if let Some(n) = self.nodes.get_mut(&new.id) {
                    n.peer = Some(new);
                }
            }
            OwnedNotification::Active => {
                self.foca_active = true;
                self.inactive_since = None;
                self.reconcile_members(now, rt);
                tracing::info!(me = ?self.me, "joined the cluster");
                self.sync_all(now, rt);
            }
            OwnedNotification::Rejoin(me) => {
                tracing::warn!(
                    ?me,
                    "declared down by the cluster; rejoined with a new generation"
                );
                self.me = me;
                self.became_inactive(now);
                self.sync_all(now, rt);
            }
            OwnedNotification::Idle => {
                self.became_inactive(now);
                tracing::info!("no live members");
            }
            OwnedNotification::Defunct => {
                self.became_inactive(now);
                if self.joined {
                    tracing::warn!("declared down and cannot rejoin");
                } else {
                    tracing::debug!("left the cluster");
                }
            }
        }
    }

    pub(super) fn became_inactive(&mut self, now: Duration) {
        if self.foca_active || self.inactive_since.is_none() {
            self.inactive_since = Some(now);
        }
        self.foca_active = false;
    }

    /// While foca is disconnected (it renewed our identity and nobody answered yet) it
    /// neither probes nor reports failures, so the members it last saw up would stay up here
    /// forever, e.g. when the renewal coincided with a partition. Once it has been inactive
    /// for longer than failure detection takes, consider every member down; `Active`
    /// reconciles with foca's view again.
    pub(super) fn cut_off(&mut self, now: Duration, rt: &mut impl Runtime) {
        let detection = self.config.suspect_to_down + self.config.probe_period * 2;
        if self.foca_active || self.inactive_since.is_none_or(|t| now < t + detection) {
            return;
        }
        let up: Vec<Peer> = self
            .nodes
            .values()
            .filter(|n| n.up)
            .filter_map(|n| n.peer.clone())
            .collect();
        for peer in up {
            self.member_down(now, peer, rt);
        }
    }

    /// Make our view of who is up match foca's active members (after foca reconnected).
    pub(super) fn reconcile_members(&mut self, now: Duration, rt: &mut impl Runtime) {
        let active: BTreeMap<NodeId, Peer> = self
            .foca
            .iter_members()
            .map(|m| (m.id().id, m.id().clone()))
            .collect();
        let stale: Vec<Peer> = self
            .nodes
            .iter()
            .filter(|(id, n)| n.up && !active.contains_key(id))
            .filter_map(|(_, n)| n.peer.clone())
            .collect();
        for peer in stale {
            self.member_down(now, peer, rt);
        }
        for (id, peer) in active {
            let current = self
                .nodes
                .get(&id)
                .is_some_and(|n| n.up && n.peer.as_ref() == Some(&peer));
            if !current {
                self.member_up(now, peer, rt);
            }
        }
    }

    /// Hash of this node's membership view: itself and every member foca holds alive or
    /// suspect, by (id, address, generation). Equal on two nodes that agree on who is up.
    pub(super) fn members_hash(&self) -> u64 {
        let mut ids: Vec<(NodeId, SocketAddr, u64)> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .map(|m| (m.id().id, m.id().addr, m.id().generation))
            .chain(std::iter::once((
                self.me.id,
                self.me.addr,
                self.me.generation,
            )))
            .collect();
        ids.sort();
        let mut bytes = Vec::with_capacity(ids.len() * 40);
        for (id, addr, generation) in ids {
            bytes.extend_from_slice(&id.0.to_le_bytes());
            bytes.extend_from_slice(addr.to_string().as_bytes());
            bytes.extend_from_slice(&generation.to_le_bytes());
        }
        wire::hash_bytes(&bytes)
    }

    /// foca's membership state plus this node itself, for a peer's `apply_many`.
    pub(super) fn membership_state(&self) -> Vec<foca::Member<Peer>> {
        self.foca
            .iter_membership_state()
            .cloned()
            .chain(std::iter::once(foca::Member::alive(self.me.clone())))
            .collect()
    }

    /// Keep foca's retransmission budget matched to the cluster size (it only changes when the
    /// size crosses a power of ten, so this is cheap).
    pub(super) fn resize_foca(&mut self) {
        let size = self.nodes.values().filter(|n| n.up).count() + 1;
        // Only the budget changes; foca accepts that at runtime.
        let _ = self.foca.set_config(self.config.foca(size));
    }

    pub(super) fn member_up(&mut self, now: Duration, peer: Peer, rt: &mut impl Runtime) {
        let id = peer.id;
        if id == NodeId::UNKNOWN {
            return;
        }
        let n = self.nodes.entry(id).or_insert(NodeState {
            peer: None,
            up: false,
            down_since: now,
            reaped: false,
        });
        let was_up = n.up;
        n.peer = Some(peer.clone());
        n.up = true;
        n.reaped = false;
        if !was_up {
            self.resize_foca();
            self.owner_visibility_changed(id, true, rt);
            rt.notify(Notification::Member(MemberEvent { peer, up: true }));
            self.sync_with_returning(now, id, rt);
            self.schedule_gossip(rt);
        }
    }

    /// Anti-entropy with a member that just came up (joined, or returned after a partition
    /// or a restart) over the networks we share, so that what either side wrote meanwhile is
    /// exchanged at once instead of at the next periodic sync with a random peer. Rate
    /// limited to one per quarter `sync_interval`: when half a cluster returns at once, one
    /// exchange with any of them is enough (each side already converged internally).
    pub(super) fn sync_with_returning(&mut self, now: Duration, id: NodeId, rt: &mut impl Runtime) {
        let limit = self.config.sync_interval / 4;
        if self.last_up_sync.is_some_and(|t| now < t + limit) {
            return;
        }
        let Some(addr) = self.addr_of(id) else {
            return;
        };
        let nets: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(nid, n)| {
                n.leaving_until.is_none()
                    && (nid.as_str() == CLUSTER
                        || self.attached.get(*nid).is_some_and(|s| s.contains(&id)))
            })
            .map(|(nid, _)| nid.clone())
            .collect();
        self.last_up_sync = Some(now);
        self.send_digests(now, addr, &nets, rt);
    }

    pub(super) fn member_down(&mut self, now: Duration, peer: Peer, rt: &mut impl Runtime) {
        let Some(n) = self.nodes.get_mut(&peer.id) else {
            return;
        };
        // Only the node's current life going down counts (a restarted node's old identity
        // is declared down after the new one is already up).
        if !n.up || n.peer.as_ref() != Some(&peer) {
            return;
        }
        n.up = false;
        n.down_since = now;
        self.resize_foca();
        self.owner_visibility_changed(peer.id, false, rt);
        rt.notify(Notification::Member(MemberEvent { peer, up: false }));
    }
}
