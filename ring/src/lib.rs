//! Membership and the partition ring.
//!
//! Processes find each other over gossip ([`gossip`]) without static
//! address lists; each announces its roles, zone, HTTP address and state,
//! and ingesters the partitions they own with their state
//! ([`lifecycler`]). Every process derives the same [`RingSnapshot`]:
//! distributors write to its active partitions, queriers read one serving
//! owner per partition, their own zone first ([`model`]). [`http`] serves
//! the status pages and the downscale API.

pub mod gossip;
pub mod http;
pub mod lifecycler;
pub mod model;
#[cfg(test)]
mod testing;

pub use gossip::{GossipConfig, GossipError, LocalMember, Membership};
pub use lifecycler::{PartitionLifecycler, ReadyCheck};
pub use model::{
    Instance, InstanceState, Partition, PartitionClaim, PartitionRead, PartitionState, RingError,
    RingSnapshot,
};

/// The ring of a process that runs without gossip: itself, owning
/// `partitions`, all active.
pub fn single_process_ring(local: &LocalMember, partitions: &[i32]) -> RingSnapshot {
    RingSnapshot::build([Instance {
        id: local.id.clone(),
        zone: local.zone.clone(),
        addr: local.addr.clone(),
        roles: local.roles.clone(),
        state: InstanceState::Active,
        partitions: partitions
            .iter()
            .map(|&p| {
                (
                    p,
                    PartitionClaim {
                        state: PartitionState::Active,
                        since_ms: 0,
                    },
                )
            })
            .collect(),
        seen: Default::default(),
        healthy: true,
        generation: 0,
    }])
}
