//! An ingester's side of the partition ring: it announces the partitions
//! it consumes, moves a new partition from pending to active once it has
//! had an owner for `-ingester.partition-ring.min-partition-owners-duration`,
//! follows state changes made by the partition's other owners, and
//! announces itself `ACTIVE` (read by queriers) only once it is ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::gossip::Membership;
use crate::model::{InstanceState, PartitionClaim, PartitionState};

/// Whether the ingester has caught up with its partitions.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Why a partition state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("partition {0} is pending: it becomes active on its own and cannot be switched yet")]
    Pending(i32),
}

/// The partition ownership of one ingester.
pub struct PartitionLifecycler {
    membership: Arc<Membership>,
    claims: Mutex<BTreeMap<i32, PartitionClaim>>,
    min_owners_duration: Duration,
    started: Instant,
}

impl PartitionLifecycler {
    /// Announces `partitions` as owned and keeps their states reconciled
    /// every gossip round until `cancel`, then leaves the ring.
    pub async fn start(
        membership: Arc<Membership>,
        partitions: &[i32],
        min_owners_duration: Duration,
        ready: ReadyCheck,
        cancel: CancellationToken,
    ) -> Arc<PartitionLifecycler> {
        let lifecycler = Arc::new(PartitionLifecycler {
            membership: membership.clone(),
            claims: Mutex::new(partitions.iter().map(|&p| (p, PartitionClaim::JOINING)).collect()),
            min_owners_duration,
            started: Instant::now(),
        });
        for &p in partitions {
            membership.set_claim(p, PartitionClaim::JOINING).await;
        }
        let l = lifecycler.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(l.membership.gossip_interval());
            let mut announced = InstanceState::Joining;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        l.reconcile().await;
                        let state = if ready() { InstanceState::Active } else { InstanceState::Joining };
                        if state != announced {
                            tracing::info!(state = state.as_str(), "ingester ring state changed");
                            l.membership.set_state(state).await;
                            announced = state;
                        }
                    }
                }
            }
        });
        lifecycler
    }

    /// Follows newer states from the ring and activates partitions that
    /// have had an owner for long enough.
    pub async fn reconcile(&self) {
        let ring = self.membership.snapshot();
        let mut changes = Vec::new();
        {
            let mut claims = self.claims.lock();
            for (p, ours) in claims.iter_mut() {
                let theirs = ring.partitions.get(p).map(|part| PartitionClaim {
                    state: part.state,
                    since_ms: part.since_ms,
                });
                let next = match theirs {
                    Some(t) if t.newer_than(ours) => t,
                    _ if *ours == PartitionClaim::JOINING
                        && self.started.elapsed() >= self.min_owners_duration =>
                    {
                        PartitionClaim {
                            state: PartitionState::Active,
                            since_ms: now_ms(),
                        }
                    }
                    _ => continue,
                };
                tracing::info!(partition = p, from = %ours.state, to = %next.state, "partition state changed");
                *ours = next;
                changes.push((*p, next));
            }
        }
        for (p, claim) in changes {
            self.membership.set_claim(p, claim).await;
        }
    }

    /// Sets the state of every owned partition (the downscale API):
    /// `inactive` stops writes to it, `active` resumes them. Returns the
    /// claims as they are after the change.
    pub async fn set_state(&self, state: PartitionState) -> Result<Vec<(i32, PartitionClaim)>, LifecycleError> {
        let changes = {
            let mut claims = self.claims.lock();
            if let Some((p, _)) = claims.iter().find(|(_, c)| c.state == PartitionState::Pending) {
                return Err(LifecycleError::Pending(*p));
            }
            let now = now_ms();
            let mut changes = Vec::new();
            for (p, c) in claims.iter_mut() {
                if c.state != state {
                    *c = PartitionClaim { state, since_ms: now };
                    changes.push((*p, *c));
                }
            }
            changes
        };
        for (p, claim) in changes {
            tracing::info!(partition = p, to = %claim.state, "partition state set through the API");
            self.membership.set_claim(p, claim).await;
        }
        Ok(self.claims())
    }

    /// This ingester's claims.
    pub fn claims(&self) -> Vec<(i32, PartitionClaim)> {
        self.claims.lock().iter().map(|(p, c)| (*p, *c)).collect()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::gossip::LocalMember;
    use crate::testing::{free_udp_port, gossip_config, until};

    async fn member(id: &str, port: u16, join: Vec<String>, cancel: &CancellationToken) -> Arc<Membership> {
        let cfg = gossip_config(port, join, "lifecycle");
        let local = LocalMember {
            id: id.into(),
            zone: id.split('-').nth(2).map(|z| format!("zone-{z}")).unwrap_or_default(),
            addr: format!("http://{id}"),
            roles: vec!["ingester".into()],
        };
        Membership::start(&cfg, local, InstanceState::Joining, &mut Registry::default(), cancel.clone())
            .await
            .unwrap()
    }

    /// Two zones' owners of one partition: the partition turns active
    /// after the owners duration, the instance turns ACTIVE once ready, a
    /// downscale on one owner is followed by the other, and an owner that
    /// restarts takes the state the ring kept instead of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partition_lifecycle_over_gossip() {
        let cancel = CancellationToken::new();
        let (pa, pb) = (free_udp_port(), free_udp_port());
        let seed = vec![format!("127.0.0.1:{pa}")];
        let a = member("ingester-zone-a-0", pa, vec![], &cancel).await;
        let b = member("ingester-zone-b-0", pb, seed.clone(), &cancel).await;
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let la = PartitionLifecycler::start(a.clone(), &[0], Duration::from_millis(300), Arc::new(move || r.load(Ordering::SeqCst)), cancel.clone()).await;
        let lb = PartitionLifecycler::start(b.clone(), &[0], Duration::from_millis(300), Arc::new(|| true), cancel.clone()).await;
        until(&a, "partition 0 active", |r| r.active_partitions() == vec![0]).await;
        until(&a, "a joining, b active", |r| {
            r.instances.get("ingester-zone-a-0").is_some_and(|i| i.state == InstanceState::Joining)
                && r.instances.get("ingester-zone-b-0").is_some_and(|i| i.state == InstanceState::Active)
        })
        .await;
        ready.store(true, Ordering::SeqCst);
        until(&b, "both read, own zone first", |r| {
            r.partition_reads("zone-b", 0).is_ok_and(|reads| reads[0].candidates == vec!["http://ingester-zone-b-0", "http://ingester-zone-a-0"])
        })
        .await;

        la.set_state(PartitionState::Inactive).await.unwrap();
        until(&b, "b follows a's downscale", |_| lb.claims()[0].1.state == PartitionState::Inactive).await;
        assert!(b.snapshot().active_partitions().is_empty() || b.snapshot().partitions[&0].state == PartitionState::Inactive);

        // A restart of zone b's owner: a new run that must not reactivate.
        let cancel_b = CancellationToken::new();
        let b2 = member("ingester-zone-b-0", free_udp_port(), seed, &cancel_b).await;
        let lb2 = PartitionLifecycler::start(b2.clone(), &[0], Duration::from_secs(1), Arc::new(|| true), cancel_b.clone()).await;
        until(&b2, "restarted owner follows the kept state", |_| lb2.claims()[0].1.state == PartitionState::Inactive).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(lb2.claims()[0].1.state, PartitionState::Inactive);

        lb2.set_state(PartitionState::Active).await.unwrap();
        until(&a, "back to active everywhere", |_| la.claims()[0].1.state == PartitionState::Active).await;
        cancel_b.cancel();
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_pending_partition_cannot_be_switched() {
        let cancel = CancellationToken::new();
        let a = member("ingester-zone-a-1", free_udp_port(), vec![], &cancel).await;
        let l = PartitionLifecycler::start(a, &[1], Duration::from_secs(3600), Arc::new(|| true), cancel.clone()).await;
        assert_eq!(l.set_state(PartitionState::Inactive).await, Err(LifecycleError::Pending(1)));
        cancel.cancel();
    }
}
