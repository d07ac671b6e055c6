//! The ring as data: instances, the partitions they own and the state of
//! each partition, built from what every member announces, and the
//! decisions taken from it (which partitions a distributor writes, which
//! owner a querier reads). No I/O here.
//!
//! A partition's state is not owned by any one member: every owner
//! announces the state it last saw with the time of that change, and the
//! ring's state is the most recent announcement (last writer wins). An
//! owner that joins announces `pending` at time 0, the weakest claim, so
//! that it never overrides what the others already agreed on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The state of a member process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Starting: an ingester replaying its partition; not read.
    Joining,
    /// Serving.
    Active,
    /// Shutting down; not read.
    Leaving,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Joining => "JOINING",
            InstanceState::Active => "ACTIVE",
            InstanceState::Leaving => "LEAVING",
        }
    }
}

impl FromStr for InstanceState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "JOINING" => Ok(InstanceState::Joining),
            "ACTIVE" => Ok(InstanceState::Active),
            "LEAVING" => Ok(InstanceState::Leaving),
            _ => Err(()),
        }
    }
}

/// The state of a partition, as in Mimir's partition ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionState {
    /// Has owners but does not take writes yet.
    Pending,
    /// Takes writes; read.
    Active,
    /// Being scaled down: takes no writes, still read.
    Inactive,
}

impl PartitionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionState::Pending => "pending",
            PartitionState::Active => "active",
            PartitionState::Inactive => "inactive",
        }
    }
}

impl FromStr for PartitionState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pending" => Ok(PartitionState::Pending),
            "active" => Ok(PartitionState::Active),
            "inactive" => Ok(PartitionState::Inactive),
            _ => Err(()),
        }
    }
}

impl fmt::Display for PartitionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One owner's view of a partition's state: the state and when it was
/// set (Unix milliseconds; 0 for the claim of an owner that just joined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionClaim {
    pub state: PartitionState,
    pub since_ms: i64,
}

impl PartitionClaim {
    /// What a joining owner announces.
    pub const JOINING: PartitionClaim = PartitionClaim {
        state: PartitionState::Pending,
        since_ms: 0,
    };

    /// Whether `self` wins over `other` (later change; on a tie the
    /// state further along: inactive, then active, then pending).
    pub fn newer_than(&self, other: &PartitionClaim) -> bool {
        (self.since_ms, self.state) > (other.since_ms, other.state)
    }

    /// The gossip encoding, `state:since_ms`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.state.as_str(), self.since_ms)
    }

    pub fn decode(s: &str) -> Option<PartitionClaim> {
        let (state, since) = s.split_once(':')?;
        Some(PartitionClaim {
            state: state.parse().ok()?,
            since_ms: since.parse().ok()?,
        })
    }
}

/// A member as the ring shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// Instance ID (`-ingester.ring.instance-id`), unique in the cluster.
    pub id: String,
    /// Availability zone; empty when none is set.
    pub zone: String,
    /// Base URL of its HTTP server.
    pub addr: String,
    /// What it runs (`ingester`, `distributor`, `querier`, `store-gateway`, ...).
    pub roles: Vec<String>,
    pub state: InstanceState,
    /// The partitions it owns and its view of their state.
    pub partitions: BTreeMap<i32, PartitionClaim>,
    /// Partition states it keeps for the ring without owning them: every
    /// member repeats the states it has seen, so that a partition's state
    /// outlives its owners (as Mimir's replicated ring does) and a
    /// partition whose owners are all gone is known to be missing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<i32, PartitionClaim>,
    /// Whether the failure detector thinks it alive.
    pub healthy: bool,
    /// Its start time (the gossip generation), to tell a restart from
    /// the previous run of the same instance.
    pub generation: u64,
}

impl Instance {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether a querier may read it.
    pub fn serving(&self) -> bool {
        self.healthy && self.state == InstanceState::Active
    }
}

/// A partition as the ring shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partition {
    pub id: i32,
    pub state: PartitionState,
    /// When the state was set (Unix ms; 0 = never, the partition is new).
    pub since_ms: i64,
    /// Instances that announce it, healthy or not, by ID.
    pub owners: Vec<String>,
}

/// The whole ring at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RingSnapshot {
    pub instances: BTreeMap<String, Instance>,
    pub partitions: BTreeMap<i32, Partition>,
}

/// Why the ring cannot answer a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("the partition ring has no partitions yet (no ingester has joined)")]
    NoPartitions,
    #[error("partition {partition} has no healthy owner (owners: {owners})")]
    NoHealthyOwner { partition: i32, owners: String },
    #[error("no healthy {role} in the ring")]
    NoInstance { role: String },
}

/// The owners a querier may read one partition from, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    pub partition: i32,
    /// Base URLs of its serving owners: the preferred zone first.
    pub candidates: Vec<String>,
}

impl RingSnapshot {
    /// Builds the ring from every member's announcement. Several runs of
    /// one instance (a restart) keep the latest; partition states are
    /// merged over every run ever seen, the dead included, so that a
    /// state outlives the process that set it.
    pub fn build(members: impl IntoIterator<Item = Instance>) -> RingSnapshot {
        let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
        let mut partitions: BTreeMap<i32, Partition> = BTreeMap::new();
        for m in members {
            for (&p, claim) in m.partitions.iter().chain(&m.seen) {
                let part = partitions.entry(p).or_insert(Partition {
                    id: p,
                    state: claim.state,
                    since_ms: claim.since_ms,
                    owners: Vec::new(),
                });
                let current = PartitionClaim {
                    state: part.state,
                    since_ms: part.since_ms,
                };
                if claim.newer_than(&current) {
                    part.state = claim.state;
                    part.since_ms = claim.since_ms;
                }
            }
            match instances.get(&m.id) {
                Some(old) if old.generation > m.generation => {}
                _ => {
                    instances.insert(m.id.clone(), m);
                }
            }
        }
        for inst in instances.values() {
            for p in inst.partitions.keys() {
                if let Some(part) = partitions.get_mut(p) {
                    part.owners.push(inst.id.clone());
                }
            }
        }
        RingSnapshot {
            instances,
            partitions,
        }
    }

    /// The partitions distributors write to, ascending.
    pub fn active_partitions(&self) -> Vec<i32> {
        self.partitions
            .values()
            .filter(|p| p.state == PartitionState::Active)
            .map(|p| p.id)
            .collect()
    }

    /// Where a querier reads every partition: one list of candidate
    /// owners per partition, owners in `zone` first. A partition that
    /// took writes (active or inactive) and has no serving owner is an
    /// error: reading without it would be silently incomplete. Skipped
    /// when they have none: a pending partition (it never took writes),
    /// and a partition inactive since before `inactive_before_ms` (it took
    /// no write since; what it has is older than what the querier asks
    /// ingesters for, and in blocks: a finished downscale).
    pub fn partition_reads(&self, zone: &str, inactive_before_ms: i64) -> Result<Vec<PartitionRead>, RingError> {
        if self.partitions.is_empty() {
            return Err(RingError::NoPartitions);
        }
        let mut reads = Vec::with_capacity(self.partitions.len());
        for part in self.partitions.values() {
            let mut owners: Vec<&Instance> = part
                .owners
                .iter()
                .filter_map(|id| self.instances.get(id))
                .filter(|i| i.serving())
                .collect();
            if owners.is_empty() {
                let retired = part.state == PartitionState::Inactive && part.since_ms < inactive_before_ms;
                if part.state == PartitionState::Pending || retired {
                    continue;
                }
                return Err(RingError::NoHealthyOwner {
                    partition: part.id,
                    owners: if part.owners.is_empty() {
                        "none".into()
                    } else {
                        part.owners.join(", ")
                    },
                });
            }
            owners.sort_by(|a, b| zone_order(zone, a, b));
            reads.push(PartitionRead {
                partition: part.id,
                candidates: owners.iter().map(|i| i.addr.clone()).collect(),
            });
        }
        Ok(reads)
    }

    /// Serving instances with `role`, those in `zone` first: any one of
    /// them answers (store-gateways each serve the whole bucket).
    pub fn instances_with_role(&self, role: &str, zone: &str) -> Result<Vec<String>, RingError> {
        let mut found: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| i.has_role(role) && i.serving())
            .collect();
        if found.is_empty() {
            return Err(RingError::NoInstance { role: role.into() });
        }
        found.sort_by(|a, b| zone_order(zone, a, b));
        Ok(found.iter().map(|i| i.addr.clone()).collect())
    }
}

/// Instances in `zone` first, then by zone and ID (stable).
fn zone_order(zone: &str, a: &Instance, b: &Instance) -> std::cmp::Ordering {
    (a.zone != zone, &a.zone, &a.id).cmp(&(b.zone != zone, &b.zone, &b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(state: PartitionState, since_ms: i64) -> PartitionClaim {
        PartitionClaim { state, since_ms }
    }

    fn ingester(id: &str, zone: &str, p: i32, c: PartitionClaim) -> Instance {
        Instance {
            id: id.into(),
            zone: zone.into(),
            addr: format!("http://{id}"),
            roles: vec!["ingester".into()],
            state: InstanceState::Active,
            partitions: BTreeMap::from([(p, c)]),
            seen: BTreeMap::new(),
            healthy: true,
            generation: 1,
        }
    }

    use PartitionState::*;

    #[test]
    fn claims_round_trip_and_order() {
        for c in [claim(Pending, 0), claim(Active, 1_700_000_000_000), claim(Inactive, 5)] {
            assert_eq!(PartitionClaim::decode(&c.encode()), Some(c));
        }
        for bad in ["", "active", "active:", "gone:1", "active:x", ":1"] {
            assert_eq!(PartitionClaim::decode(bad), None, "{bad:?}");
        }
        assert!(claim(Active, 2).newer_than(&claim(Inactive, 1)));
        assert!(claim(Inactive, 2).newer_than(&claim(Active, 2)));
        assert!(claim(Active, 1).newer_than(&PartitionClaim::JOINING));
        assert!(!PartitionClaim::JOINING.newer_than(&claim(Active, 1)));
    }

    #[test]
    fn latest_claim_wins_and_joining_owner_does_not_override() {
        let ring = RingSnapshot::build([
            ingester("a-0", "zone-a", 0, claim(Active, 10)),
            ingester("b-0", "zone-b", 0, PartitionClaim::JOINING),
            ingester("a-1", "zone-a", 1, claim(Active, 10)),
            ingester("b-1", "zone-b", 1, claim(Inactive, 20)),
            ingester("a-2", "zone-a", 2, PartitionClaim::JOINING),
        ]);
        assert_eq!(ring.partitions[&0].state, Active);
        assert_eq!(ring.partitions[&1].state, Inactive);
        assert_eq!(ring.partitions[&2].state, Pending);
        assert_eq!(ring.active_partitions(), vec![0]);
        assert_eq!(ring.partitions[&0].owners, vec!["a-0", "b-0"]);
    }

    /// Once every owner of a partition is gone, the states other members
    /// repeat keep it known: reading it is an error, never a silent skip.
    #[test]
    fn a_partition_outlives_its_owners_in_what_others_saw() {
        let mut witness = ingester("querier-1", "zone-a", 0, claim(Active, 1));
        witness.roles = vec!["querier".into()];
        witness.seen = std::mem::take(&mut witness.partitions);
        witness.seen.insert(1, claim(Inactive, 20));
        let ring = RingSnapshot::build([witness]);
        assert_eq!(ring.partitions[&0].state, Active);
        assert!(ring.partitions[&0].owners.is_empty(), "a witness is no owner");
        assert_eq!(ring.active_partitions(), vec![0]);
        assert_eq!(
            ring.partition_reads("zone-a", 0),
            Err(RingError::NoHealthyOwner { partition: 0, owners: "none".into() })
        );
    }

    #[test]
    fn a_dead_owner_keeps_the_state_it_set() {
        let mut dead = ingester("a-1", "zone-a", 1, claim(Inactive, 20));
        dead.healthy = false;
        let ring = RingSnapshot::build([dead, ingester("b-1", "zone-b", 1, claim(Active, 10))]);
        assert_eq!(ring.partitions[&1].state, Inactive);
    }

    #[test]
    fn a_restart_replaces_the_previous_run() {
        let mut old = ingester("a-0", "zone-a", 0, claim(Active, 10));
        old.healthy = false;
        old.addr = "http://old".into();
        let mut new = ingester("a-0", "zone-a", 0, PartitionClaim::JOINING);
        new.generation = 2;
        new.state = InstanceState::Joining;
        for members in [vec![old.clone(), new.clone()], vec![new.clone(), old.clone()]] {
            let ring = RingSnapshot::build(members);
            assert_eq!(ring.instances.len(), 1);
            assert_eq!(ring.instances["a-0"].addr, "http://a-0");
            assert_eq!(ring.partitions[&0].state, Active, "state outlives the run that set it");
            assert_eq!(
                ring.partition_reads("zone-a", 0),
                Err(RingError::NoHealthyOwner { partition: 0, owners: "a-0".into() })
            );
        }
    }

    #[test]
    fn reads_prefer_the_own_zone_and_skip_what_cannot_serve() {
        let mut joining = ingester("a-1", "zone-a", 1, claim(Active, 10));
        joining.state = InstanceState::Joining;
        let ring = RingSnapshot::build([
            ingester("a-0", "zone-a", 0, claim(Active, 10)),
            ingester("b-0", "zone-b", 0, claim(Active, 10)),
            joining,
            ingester("b-1", "zone-b", 1, claim(Active, 10)),
        ]);
        let reads = ring.partition_reads("zone-a", 0).unwrap();
        assert_eq!(reads[0].candidates, vec!["http://a-0", "http://b-0"]);
        assert_eq!(reads[1].candidates, vec!["http://b-1"]);
        let reads = ring.partition_reads("zone-b", 0).unwrap();
        assert_eq!(reads[0].candidates, vec!["http://b-0", "http://a-0"]);
    }

    #[test]
    fn unserved_partitions_are_errors_unless_pending() {
        let mut down = ingester("a-1", "zone-a", 1, claim(Inactive, 10));
        down.healthy = false;
        let mut pending = ingester("a-2", "zone-a", 2, PartitionClaim::JOINING);
        pending.state = InstanceState::Joining;
        let ring = RingSnapshot::build([ingester("a-0", "zone-a", 0, claim(Active, 1)), pending.clone()]);
        assert_eq!(ring.partition_reads("", 0).unwrap().len(), 1, "pending partition skipped");
        let ring = RingSnapshot::build([ingester("a-0", "zone-a", 0, claim(Active, 1)), down, pending]);
        assert_eq!(
            ring.partition_reads("", 0),
            Err(RingError::NoHealthyOwner { partition: 1, owners: "a-1".into() })
        );
        assert_eq!(RingSnapshot::default().partition_reads("", 0), Err(RingError::NoPartitions));
        // A downscale finished long ago (inactive since 10, owners gone):
        // skipped once the querier no longer asks ingesters for data that
        // old.
        let mut gone = ingester("a-1", "zone-a", 1, claim(Inactive, 10));
        gone.healthy = false;
        let ring = RingSnapshot::build([ingester("a-0", "zone-a", 0, claim(Active, 1)), gone]);
        assert!(ring.partition_reads("", 10).is_err());
        assert_eq!(ring.partition_reads("", 11).unwrap().len(), 1);
    }

    #[test]
    fn any_instance_of_a_role() {
        let mut sg = ingester("sg-b", "zone-b", 0, claim(Active, 1));
        sg.roles = vec!["store-gateway".into()];
        sg.partitions.clear();
        let mut sg2 = sg.clone();
        sg2.id = "sg-a".into();
        sg2.zone = "zone-a".into();
        sg2.addr = "http://sg-a".into();
        let ring = RingSnapshot::build([sg.clone(), sg2]);
        assert_eq!(
            ring.instances_with_role("store-gateway", "zone-b").unwrap(),
            vec!["http://sg-b", "http://sg-a"]
        );
        assert!(ring.instances_with_role("compactor", "").is_err());
        assert!(ring.partitions.is_empty());
    }
}
