//! One consumer group's membership and rebalance state machine.
//!
//! Kafka's classic protocol, in short: members JoinGroup with the protocols
//! (assignors) they support; once every known member has rejoined (or the
//! rebalance timeout passes, and the missing ones are dropped) the
//! generation advances, one protocol is chosen, and every member gets a
//! JoinGroup answer; the leader also gets the members' metadata. The leader
//! then sends the assignment in SyncGroup, which completes everyone's
//! SyncGroup. Heartbeats keep members alive and tell them when to rejoin.
//! The broker never looks inside assignments: any assignor works.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

pub(crate) use crate::protocol::code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may still be stored).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen_ms: u64,
    /// Rejoined during the current rebalance.
    joined: bool,
}

impl Member {
    /// This member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// JoinGroup v4+: an unknown member must first be given an id.
    pub require_known_member_id: bool,
}

/// The answer a JoinGroup gets once its rebalance completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// `(member id, instance id, metadata)`, for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What happened to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Answer now (an error, or MEMBER_ID_REQUIRED with the new id).
    Now(JoinResult),
    /// Park until a rebalance completes; then `complete_join` answers it.
    Wait { member_id: String },
}

/// What happened to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    Now {
        error: i16,
        assignment: Bytes,
    },
    /// Park until the leader's assignment arrives.
    Wait,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    rebalance_deadline_ms: Option<u64>,
    /// The first rebalance of an empty group waits this long for more
    /// members (`group.initial.rebalance.delay.ms`).
    pub initial_delay_ms: u64,
    join_not_before_ms: Option<u64>,
    next_member: u64,
}

impl Group {
    pub fn new(id: impl Into<String>) -> Self {
        Group {
            id: id.into(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_ms: 0,
            join_not_before_ms: None,
            next_member: 0,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn is_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!(
            "{client_id}-{}-{}",
            self.next_member,
            uuid::Uuid::new_v4().simple()
        )
    }

    fn error(&self, member_id: &str, error: i16) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            protocol_type: self.protocol_type.clone(),
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }

    /// Protocols every member (plus `candidate`) supports.
    fn compatible(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty()
            || self.members.len() == 1 && self.members.contains_key(&req.member_id)
        {
            return self
                .protocol_type
                .as_deref()
                .is_none_or(|t| t == req.protocol_type)
                || self.members.is_empty();
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        req.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != req.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn start_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        self.join_not_before_ms = (self.state == GroupState::Empty && self.initial_delay_ms > 0)
            .then(|| now_ms + self.initial_delay_ms);
        self.state = GroupState::PreparingRebalance;
        for m in self.members.values_mut() {
            m.joined = false;
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = Some(now_ms + timeout);
    }

    /// Handles a JoinGroup.
    pub fn join(&mut self, req: JoinRequest, now_ms: u64) -> Joined {
        if req.session_timeout_ms == 0 {
            return Joined::Now(self.error(&req.member_id, code::INVALID_SESSION_TIMEOUT));
        }
        if !self.compatible(&req) {
            return Joined::Now(self.error(&req.member_id, code::INCONSISTENT_GROUP_PROTOCOL));
        }
        let mut member_id = req.member_id.clone();
        if let Some(instance) = &req.instance_id {
            // Static member: its instance id owns one member id at a time.
            match self.static_members.get(instance).cloned() {
                Some(known) if member_id.is_empty() || member_id != known => {
                    // A restarted static member: replace the old id, keep the
                    // assignment, no rebalance while the group is stable.
                    let old = self.members.remove(&known);
                    let new_id = self.new_member_id(&req.client_id);
                    self.static_members.insert(instance.clone(), new_id.clone());
                    if let Some(mut m) = old {
                        m.id = new_id.clone();
                        m.protocols = req.protocols.clone();
                        m.last_seen_ms = now_ms;
                        m.session_timeout_ms = req.session_timeout_ms;
                        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
                        if self.leader.as_deref() == Some(known.as_str()) {
                            self.leader = Some(new_id.clone());
                        }
                        self.members.insert(new_id.clone(), m);
                        if self.state == GroupState::Stable {
                            return Joined::Now(JoinResult {
                                error: code::NONE,
                                generation: self.generation,
                                protocol_type: self.protocol_type.clone(),
                                protocol: self.protocol.clone(),
                                leader: self.leader.clone().unwrap_or_default(),
                                member_id: new_id,
                                members: Vec::new(),
                            });
                        }
                    }
                    member_id = new_id;
                }
                Some(_) => {}
                None => {
                    if member_id.is_empty() {
                        member_id = self.new_member_id(&req.client_id);
                    }
                    self.static_members
                        .insert(instance.clone(), member_id.clone());
                }
            }
        } else if member_id.is_empty() {
            let id = self.new_member_id(&req.client_id);
            if req.require_known_member_id {
                // KIP-394: hand out the id; the client joins again with it.
                // Remember it as a member so the second join is accepted.
                self.add_member(&id, &req, now_ms);
                return Joined::Now(self.error(&id, code::MEMBER_ID_REQUIRED));
            }
            member_id = id;
        } else if !self.members.contains_key(&member_id) {
            return Joined::Now(self.error(&member_id, code::UNKNOWN_MEMBER_ID));
        }

        let known = self
            .members
            .get(&member_id)
            .map(|m| m.protocols == req.protocols);
        self.add_member(&member_id, &req, now_ms);
        match self.state {
            GroupState::Empty => self.start_rebalance(now_ms),
            GroupState::PreparingRebalance => {}
            GroupState::CompletingRebalance | GroupState::Stable => {
                // A known member with unchanged metadata rejoining a stable
                // group that is not the leader would just get its current
                // generation; Kafka rebalances on any rejoin, so do we.
                let _ = known;
                self.start_rebalance(now_ms);
            }
        }
        if let Some(m) = self.members.get_mut(&member_id) {
            m.joined = true;
        }
        Joined::Wait { member_id }
    }

    fn add_member(&mut self, id: &str, req: &JoinRequest, now_ms: u64) {
        let m = self
            .members
            .entry(id.to_string())
            .or_insert_with(|| Member {
                id: id.to_string(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_seen_ms: now_ms,
                joined: false,
            });
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.last_seen_ms = now_ms;
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
    }

    /// Completes the join phase when every member has rejoined, or when
    /// the rebalance timeout has passed (dropping those that did not).
    /// Returns the answer for every parked JoinGroup.
    pub fn complete_join(&mut self, now_ms: u64) -> Option<Vec<JoinResult>> {
        if self.state != GroupState::PreparingRebalance {
            return None;
        }
        let delay_over = self.join_not_before_ms.is_none_or(|t| now_ms >= t);
        let all_joined = delay_over && self.members.values().all(|m| m.joined);
        let timed_out = self.rebalance_deadline_ms.is_some_and(|d| now_ms >= d);
        if !all_joined && !timed_out {
            return None;
        }
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.joined)
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.remove(&id);
        }
        self.rebalance_deadline_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return Some(Vec::new());
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        Some(
            self.members
                .values()
                .map(|m| JoinResult {
                    error: code::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        )
    }

    /// The protocol with the most votes, each member voting for its first
    /// choice among the protocols every member supports (Kafka's rule).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = common.iter().map(|n| (*n, 0)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m.protocols.iter().find(|(n, _)| common.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(n, _)| *n == choice) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the earliest in the first member's preference order.
        let best = votes.iter().map(|(_, c)| *c).max()?;
        votes
            .iter()
            .find(|(_, c)| *c == best)
            .map(|(n, _)| (*n).clone())
    }

    /// Handles a SyncGroup. The leader's call carries the assignments.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Synced {
        let err = |e| Synced::Now {
            error: e,
            assignment: Bytes::new(),
        };
        if !self.members.contains_key(member_id) {
            return err(code::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return err(code::ILLEGAL_GENERATION);
        }
        match self.state {
            GroupState::Empty => err(code::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => err(code::REBALANCE_IN_PROGRESS),
            GroupState::Stable => Synced::Now {
                error: code::NONE,
                assignment: self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            },
            GroupState::CompletingRebalance => {
                if self.leader.as_deref() == Some(member_id) {
                    for m in self.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, a) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = a;
                        }
                    }
                    self.state = GroupState::Stable;
                    Synced::Now {
                        error: code::NONE,
                        assignment: self
                            .members
                            .get(member_id)
                            .map(|m| m.assignment.clone())
                            .unwrap_or_default(),
                    }
                } else {
                    Synced::Wait
                }
            }
        }
    }

    /// The assignment of a member whose SyncGroup was parked, once the
    /// group is stable.
    pub fn assignment(&self, member_id: &str) -> Option<Bytes> {
        (self.state == GroupState::Stable)
            .then(|| self.members.get(member_id).map(|m| m.assignment.clone()))
            .flatten()
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now_ms: u64) -> i16 {
        let Some(m) = self.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        m.last_seen_ms = now_ms;
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            _ => code::NONE,
        }
    }

    /// Handles one member of a LeaveGroup.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now_ms: u64) -> i16 {
        let id = match instance_id {
            Some(inst) => match self.static_members.get(inst) {
                Some(known) if member_id.is_empty() || known == member_id => known.clone(),
                Some(_) => return code::FENCED_INSTANCE_ID,
                None => return code::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        self.remove(&id);
        self.after_departure(now_ms);
        code::NONE
    }

    fn remove(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = m.instance_id {
                if self.static_members.get(&inst).is_some_and(|k| k == id) {
                    self.static_members.remove(&inst);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn after_departure(&mut self, now_ms: u64) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline_ms = None;
        } else if self.state != GroupState::PreparingRebalance {
            self.start_rebalance(now_ms);
        }
    }

    /// Expires members whose session timed out. Returns their ids.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let dead: Vec<String> = self
            .members
            .values()
            // A member parked in JoinGroup is alive while it waits.
            .filter(|m| !(self.state == GroupState::PreparingRebalance && m.joined))
            .filter(|m| now_ms.saturating_sub(m.last_seen_ms) > m.session_timeout_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in &dead {
            self.remove(id);
        }
        if !dead.is_empty() {
            self.after_departure(now_ms);
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(member: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            require_known_member_id: true,
        }
    }

    /// Joins with MEMBER_ID_REQUIRED first, as a v4+ client does.
    fn join(g: &mut Group, protocols: &[&str], now: u64) -> String {
        let Joined::Now(r) = g.join(req("", protocols), now) else {
            panic!("first join must answer")
        };
        assert_eq!(r.error, code::MEMBER_ID_REQUIRED);
        match g.join(req(&r.member_id, protocols), now) {
            Joined::Wait { member_id } => member_id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_members_join_sync_and_rebalance_on_leave() {
        let mut g = Group::new("g");
        let a = join(&mut g, &["range", "roundrobin"], 0);
        let b = join(&mut g, &["roundrobin", "range"], 0);
        let results = g.complete_join(0).expect("everyone joined");
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.generation == 1 && r.error == 0));
        // One vote each: the tie goes to the first member's preference.
        assert_eq!(g.protocol.as_deref(), Some("range"));
        let leader = g.leader.clone().expect("leader");
        let follower = if leader == a { b.clone() } else { a.clone() };
        assert_eq!(
            results
                .iter()
                .find(|r| r.member_id == leader)
                .map(|r| r.members.len()),
            Some(2)
        );
        assert_eq!(g.sync(&follower, 1, vec![]), Synced::Wait);
        let assignments = vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))];
        assert!(matches!(
            g.sync(&leader, 1, assignments),
            Synced::Now { error: 0, .. }
        ));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.assignment(&a), Some(Bytes::from("A")));
        assert_eq!(g.heartbeat(&a, 1, 1), 0);
        assert_eq!(g.heartbeat(&a, 0, 1), code::ILLEGAL_GENERATION);
        assert_eq!(g.leave(&b, None, 2), 0);
        assert_eq!(g.heartbeat(&a, 1, 3), code::REBALANCE_IN_PROGRESS);
        assert!(matches!(
            g.join(req(&a, &["range"]), 3),
            Joined::Wait { .. }
        ));
        let r = g.complete_join(3).expect("complete");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].generation, 2);
        assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    }

    #[test]
    fn initial_delay_gathers_members_of_a_new_group() {
        let mut g = Group::new("g");
        g.initial_delay_ms = 3000;
        let a = join(&mut g, &["range"], 0);
        assert!(g.complete_join(100).is_none(), "waiting for more members");
        let b = join(&mut g, &["range"], 1000);
        assert!(g.complete_join(2999).is_none());
        let r = g.complete_join(3000).expect("delay over");
        assert_eq!(r.len(), 2);
        assert!(g.is_member(&a) && g.is_member(&b));
        // Later rebalances are not delayed.
        assert_eq!(g.leave(&b, None, 4000), 0);
        assert!(matches!(
            g.join(req(&a, &["range"]), 4000),
            Joined::Wait { .. }
        ));
        assert!(g.complete_join(4000).is_some());
    }

    #[test]
    fn rebalance_timeout_drops_members_that_do_not_rejoin() {
        let mut g = Group::new("g");
        let a = join(&mut g, &["range"], 0);
        let b = join(&mut g, &["range"], 0);
        g.complete_join(0).expect("joined");
        let leader = g.leader.clone().expect("leader");
        g.sync(&leader, 1, vec![]);
        // A third member arrives; only `a` rejoins.
        let c = join(&mut g, &["range"], 100);
        assert!(matches!(
            g.join(req(&a, &["range"]), 100),
            Joined::Wait { .. }
        ));
        assert!(g.complete_join(200).is_none(), "b may still rejoin");
        let r = g.complete_join(100 + 30_000).expect("timeout completes");
        assert_eq!(r.len(), 2);
        assert!(!g.is_member(&b));
        assert!(g.is_member(&c));
    }

    #[test]
    fn sessions_expire_and_inconsistent_protocols_are_refused() {
        let mut g = Group::new("g");
        let a = join(&mut g, &["range"], 0);
        g.complete_join(0).expect("joined");
        g.sync(&a, 1, vec![(a.clone(), Bytes::from("x"))]);
        // Checked before a member id is handed out, as Kafka does.
        let Joined::Now(r) = g.join(req("", &["sticky"]), 1) else {
            panic!()
        };
        assert_eq!(r.error, code::INCONSISTENT_GROUP_PROTOCOL);
        assert_eq!(g.expire(5_000), Vec::<String>::new());
        assert_eq!(g.expire(20_001), vec![a]);
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn static_member_restart_keeps_assignment_without_rebalance() {
        let mut g = Group::new("g");
        let mut r = req("", &["range"]);
        r.instance_id = Some("pod-0".into());
        let Joined::Wait { member_id: first } = g.join(r.clone(), 0) else {
            panic!()
        };
        g.complete_join(0).expect("joined");
        g.sync(&first, 1, vec![(first.clone(), Bytes::from("P0"))]);
        // The pod restarts: same instance id, no member id.
        let Joined::Now(res) = g.join(r, 10) else {
            panic!("stable static rejoin answers at once")
        };
        assert_eq!(res.error, 0);
        assert_eq!(res.generation, 1, "no new generation");
        assert_ne!(res.member_id, first);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.assignment(&res.member_id), Some(Bytes::from("P0")));
        assert_eq!(
            g.heartbeat(&first, 1, 11),
            code::UNKNOWN_MEMBER_ID,
            "old id is fenced"
        );
        assert_eq!(g.leave(&first, Some("pod-0"), 12), code::FENCED_INSTANCE_ID);
    }
}
