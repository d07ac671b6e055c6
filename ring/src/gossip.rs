//! Membership over gossip (chitchat, Scuttlebutt reconciliation over UDP):
//! every process announces who it is and what it owns as key-values, and
//! reads everyone's into a [`RingSnapshot`] kept up to date.
//!
//! Keys a member announces: `roles` (comma-separated), `zone`, `addr`
//! (base URL of its HTTP server), `state` (`JOINING`, `ACTIVE`,
//! `LEAVING`) and one `partition/<id>` per owned partition holding its
//! [`PartitionClaim`]. Every member also repeats, as `seen/<id>`, the state
//! of each active or inactive partition it knows, so that the ring keeps a
//! partition after all its owners are gone (reads of it fail instead of
//! silently leaving it out), until an inactive partition without owners
//! is older than `forget_inactive_after`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use parking_lot::Mutex as SyncMutex;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::model::{Instance, InstanceState, PartitionClaim, PartitionState, RingSnapshot};

const KEY_ROLES: &str = "roles";
const KEY_ZONE: &str = "zone";
const KEY_ADDR: &str = "addr";
const KEY_STATE: &str = "state";
const PARTITION_PREFIX: &str = "partition/";
const SEEN_PREFIX: &str = "seen/";

/// Gossip settings (`-memberlist.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Members to join (`host:port`); at least one.
    pub join: Vec<String>,
    /// Address and UDP port gossip listens on.
    pub bind_addr: IpAddr,
    pub bind_port: u16,
    /// Address others reach this member at; unspecified = found from the
    /// host name (or the bind address when it is a specific one).
    pub advertise_addr: Option<IpAddr>,
    /// Members of one cluster share this label; others are ignored.
    pub cluster_label: String,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// How long a member that stopped answering stays in the ring (its
    /// partition states with it) before it is forgotten.
    pub left_members_timeout: Duration,
    /// An inactive partition without a healthy owner is forgotten once
    /// inactive this long (Mimir's
    /// `-ingester.partition-ring.delete-inactive-partition-after`).
    pub forget_inactive_after: Duration,
}

/// This process as the ring shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMember {
    pub id: String,
    pub zone: String,
    /// Base URL of the HTTP server, as others reach it.
    pub addr: String,
    pub roles: Vec<String>,
}

/// Errors of membership.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot start gossip on {addr}: {message}")]
    Start { addr: SocketAddr, message: String },
}

/// A running member of the cluster.
pub struct Membership {
    handle: SyncMutex<Option<ChitchatHandle>>,
    chitchat: Arc<Mutex<Chitchat>>,
    snapshot: watch::Sender<Arc<RingSnapshot>>,
    local: LocalMember,
    gossip_addr: SocketAddr,
    gossip_interval: Duration,
    forget_inactive_after: Duration,
    metrics: RingMetrics,
    /// Set by [`Membership::leave`]: the state no longer changes.
    leaving: std::sync::atomic::AtomicBool,
}

impl Membership {
    /// Starts gossiping as `local` in `state`, and keeps the snapshot up
    /// to date until `cancel`.
    pub async fn start(
        cfg: &GossipConfig,
        local: LocalMember,
        state: InstanceState,
        registry: &mut Registry,
        cancel: CancellationToken,
    ) -> Result<Arc<Membership>, GossipError> {
        let advertise_ip = advertise_ip(cfg).await;
        let gossip_addr = SocketAddr::new(advertise_ip, cfg.bind_port);
        let listen_addr = SocketAddr::new(cfg.bind_addr, cfg.bind_port);
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(local.id.clone(), generation, gossip_addr),
            cluster_id: cfg.cluster_label.clone(),
            gossip_interval: cfg.gossip_interval,
            listen_addr,
            seed_nodes: cfg.join.clone(),
            failure_detector_config: FailureDetectorConfig {
                dead_node_grace_period: cfg.left_members_timeout,
                initial_interval: cfg.gossip_interval * 5,
                max_interval: cfg.gossip_interval * 10,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let initial = vec![
            (KEY_ROLES.to_owned(), local.roles.join(",")),
            (KEY_ZONE.to_owned(), local.zone.clone()),
            (KEY_ADDR.to_owned(), local.addr.clone()),
            (KEY_STATE.to_owned(), state.as_str().to_owned()),
        ];
        let handle = spawn_chitchat(config, initial, &UdpTransport)
            .await
            .map_err(|e| GossipError::Start {
                addr: listen_addr,
                message: format!("{e:#}"),
            })?;
        tracing::info!(%gossip_addr, join = ?cfg.join, id = %local.id, zone = %local.zone, "joined the memberlist");
        let chitchat = handle.chitchat();
        let (snapshot, _) = watch::channel(Arc::new(RingSnapshot::default()));
        let membership = Arc::new(Membership {
            handle: SyncMutex::new(Some(handle)),
            chitchat,
            snapshot,
            local,
            gossip_addr,
            gossip_interval: cfg.gossip_interval,
            forget_inactive_after: cfg.forget_inactive_after,
            metrics: RingMetrics::new(registry),
            leaving: std::sync::atomic::AtomicBool::new(false),
        });
        membership.refresh().await;
        let m = membership.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(m.gossip_interval);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        m.refresh().await;
                        m.witness().await;
                    }
                }
            }
        });
        Ok(membership)
    }

    /// The ring now.
    pub fn snapshot(&self) -> Arc<RingSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// The ring, updated as it changes.
    pub fn watch(&self) -> watch::Receiver<Arc<RingSnapshot>> {
        self.snapshot.subscribe()
    }

    pub fn local(&self) -> &LocalMember {
        &self.local
    }

    /// The address others gossip with this member at.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    pub fn gossip_interval(&self) -> Duration {
        self.gossip_interval
    }

    /// Announces this member's state.
    pub async fn set_state(&self, state: InstanceState) {
        {
            // Checked under the lock, so nothing overwrites LEAVING.
            let mut chitchat = self.chitchat.lock().await;
            if self.leaving.load(std::sync::atomic::Ordering::SeqCst) && state != InstanceState::Leaving {
                return;
            }
            chitchat.self_node_state().set(KEY_STATE, state.as_str());
        }
        self.refresh().await;
    }

    /// Announces this member's view of a partition it owns.
    pub async fn set_claim(&self, partition: i32, claim: PartitionClaim) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(format!("{PARTITION_PREFIX}{partition}"), claim.encode());
        self.refresh().await;
    }

    /// Announces `LEAVING`, gives the others a few gossip rounds to learn
    /// it, and stops gossiping.
    pub async fn leave(&self) {
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
        self.set_state(InstanceState::Leaving).await;
        tokio::time::sleep(self.gossip_interval * 3).await;
        let handle = self.handle.lock().take();
        if let Some(h) = handle {
            if let Err(e) = h.shutdown().await {
                tracing::warn!(error = %e, "gossip did not stop cleanly");
            }
        }
    }

    /// Repeats the state of every active or inactive partition the ring
    /// knows as this member's `seen/<id>`, and drops those of partitions
    /// that are pending or retired (inactive without a healthy owner for
    /// longer than `forget_inactive_after`).
    async fn witness(&self) {
        let ring = self.snapshot();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let forget_before = now.saturating_sub(i64::try_from(self.forget_inactive_after.as_millis()).unwrap_or(i64::MAX));
        let mut changed = false;
        {
            let mut chitchat = self.chitchat.lock().await;
            let me = chitchat.self_node_state();
            let mut keep = std::collections::BTreeSet::new();
            for part in ring.partitions.values() {
                let owned = part
                    .owners
                    .iter()
                    .any(|id| ring.instances.get(id).is_some_and(|i| i.healthy));
                let retired = part.state == PartitionState::Inactive && !owned && part.since_ms < forget_before;
                if part.state == PartitionState::Pending || retired {
                    continue;
                }
                let key = format!("{SEEN_PREFIX}{}", part.id);
                let value = PartitionClaim {
                    state: part.state,
                    since_ms: part.since_ms,
                }
                .encode();
                if me.get(&key) != Some(value.as_str()) {
                    me.set(key.clone(), value);
                    changed = true;
                }
                keep.insert(key);
            }
            let stale: Vec<String> = me
                .iter_prefix(SEEN_PREFIX)
                .map(|(k, _)| k.to_owned())
                .filter(|k| !keep.contains(k))
                .collect();
            for k in stale {
                me.delete(&k);
                changed = true;
            }
        }
        if changed {
            self.refresh().await;
        }
    }

    /// Stops gossiping at once, as a crash would (tests).
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        if let Some(h) = self.handle.lock().take() {
            h.abort();
        }
    }

    /// Rebuilds the snapshot from what gossip knows now.
    async fn refresh(&self) {
        let members = {
            let chitchat = self.chitchat.lock().await;
            let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
            chitchat
                .node_states()
                .iter()
                .filter_map(|(id, state)| instance_of(id, state, live.contains(id)))
                .collect::<Vec<_>>()
        };
        let ring = RingSnapshot::build(members);
        self.metrics.observe(&ring);
        self.snapshot.send_if_modified(|current| {
            if **current == ring {
                false
            } else {
                *current = Arc::new(ring);
                true
            }
        });
    }
}

/// A member from its announced key-values; `None` for a member that has
/// not announced what a ring member must (another kind of process, or
/// one that has just started).
fn instance_of(id: &ChitchatId, state: &NodeState, healthy: bool) -> Option<Instance> {
    let claims = |prefix: &str| {
        let mut out = BTreeMap::new();
        for (key, value) in state.iter_prefix(prefix) {
            let Some(p) = key.strip_prefix(prefix).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            match PartitionClaim::decode(&value.value) {
                Some(claim) => {
                    out.insert(p, claim);
                }
                None => tracing::debug!(member = ?id, key, value = %value.value, "ignoring a malformed partition claim"),
            }
        }
        out
    };
    let partitions = claims(PARTITION_PREFIX);
    let seen = claims(SEEN_PREFIX);
    Some(Instance {
        id: id.node_id.to_string(),
        zone: state.get(KEY_ZONE).unwrap_or_default().to_owned(),
        addr: state.get(KEY_ADDR)?.to_owned(),
        roles: state
            .get(KEY_ROLES)?
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        state: state.get(KEY_STATE)?.parse().ok()?,
        partitions,
        seen,
        healthy,
        generation: id.generation_id,
    })
}

/// The address others gossip with this member at: the configured one,
/// else a specific bind address, else the host's own address.
pub async fn advertise_ip(cfg: &GossipConfig) -> IpAddr {
    match cfg.advertise_addr {
        Some(ip) => ip,
        None if !cfg.bind_addr.is_unspecified() => cfg.bind_addr,
        None => own_address().await,
    }
}

/// This host's address as others see it: the address its host name
/// resolves to (what container networks and `/etc/hosts` give), else the
/// loopback address.
async fn own_address() -> IpAddr {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned()));
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), 0)).await {
            let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if let Some(ip) = addrs.iter().find(|ip| ip.is_ipv4() && !ip.is_loopback()) {
                return *ip;
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Ring gauges.
#[derive(Clone)]
struct RingMetrics {
    members: Family<Vec<(String, String)>, Gauge>,
    partitions: Family<Vec<(String, String)>, Gauge>,
}

impl RingMetrics {
    fn new(registry: &mut Registry) -> RingMetrics {
        let members = Family::default();
        let partitions = Family::default();
        registry.register(
            "tidemark_ring_members",
            "Members of the ring by state and health",
            members.clone(),
        );
        registry.register(
            "tidemark_partition_ring_partitions",
            "Partitions of the partition ring by state",
            partitions.clone(),
        );
        RingMetrics { members, partitions }
    }

    fn observe(&self, ring: &RingSnapshot) {
        self.members.clear();
        for i in ring.instances.values() {
            self.members
                .get_or_create(&vec![
                    ("state".into(), i.state.as_str().into()),
                    ("healthy".into(), i.healthy.to_string()),
                ])
                .inc();
        }
        for s in ["pending", "active", "inactive"] {
            self.partitions.get_or_create(&vec![("state".into(), s.into())]).set(0);
        }
        for p in ring.partitions.values() {
            self.partitions
                .get_or_create(&vec![("state".into(), p.state.as_str().into())])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{free_udp_port, gossip_config, until};

    fn cfg(port: u16, join: Vec<String>) -> GossipConfig {
        gossip_config(port, join, "test")
    }

    fn member(id: &str, roles: &[&str]) -> LocalMember {
        LocalMember {
            id: id.into(),
            zone: "zone-a".into(),
            addr: format!("http://{id}"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// An owner crashes and is forgotten: the partition it owned stays in
    /// the ring through what the other member repeats (reads of it fail,
    /// never skip it), while its long-inactive partition is forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_outlives_its_crashed_owner() {
        let cancel = CancellationToken::new();
        let (pa, pb) = (free_udp_port(), free_udp_port());
        let mut quick = cfg(pb, vec![format!("127.0.0.1:{pa}")]);
        quick.left_members_timeout = Duration::from_secs(1);
        quick.forget_inactive_after = Duration::from_secs(1);
        let a = Membership::start(&cfg(pa, vec![]), member("ingester-zone-a-0", &["ingester"]), InstanceState::Active, &mut Registry::default(), cancel.clone())
            .await
            .unwrap();
        let b = Membership::start(&quick, member("querier-1", &["querier"]), InstanceState::Active, &mut Registry::default(), cancel.clone())
            .await
            .unwrap();
        a.set_claim(0, PartitionClaim { state: PartitionState::Active, since_ms: 5 }).await;
        a.set_claim(1, PartitionClaim { state: PartitionState::Inactive, since_ms: 1 }).await;
        until(&b, "b repeats both states", |r| {
            r.instances.get("querier-1").is_some_and(|i| i.seen.len() == 2)
        })
        .await;
        a.crash();
        until(&b, "a forgotten", |r| !r.instances.contains_key("ingester-zone-a-0")).await;
        until(&b, "partition 1 forgotten", |r| !r.partitions.contains_key(&1)).await;
        let ring = b.snapshot();
        assert_eq!(ring.partitions[&0].state, PartitionState::Active);
        assert_eq!(ring.active_partitions(), vec![0]);
        assert!(matches!(
            ring.partition_reads("zone-a", 0),
            Err(crate::RingError::NoHealthyOwner { partition: 0, .. })
        ));
        cancel.cancel();
    }

    /// Three members over real UDP sockets find each other from one seed,
    /// see each other's partition claims, and see a member leave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_find_each_other_and_see_claims() {
        let cancel = CancellationToken::new();
        let mut reg = Registry::default();
        let (p1, p2, p3) = (free_udp_port(), free_udp_port(), free_udp_port());
        let seed = vec![format!("127.0.0.1:{p1}")];
        let a = Membership::start(&cfg(p1, vec![]), member("ingester-zone-a-0", &["ingester"]), InstanceState::Joining, &mut reg, cancel.clone())
            .await
            .unwrap();
        let b = Membership::start(&cfg(p2, seed.clone()), member("querier-1", &["querier"]), InstanceState::Active, &mut Registry::default(), cancel.clone())
            .await
            .unwrap();
        let c = Membership::start(&cfg(p3, seed), member("distributor-1", &["distributor"]), InstanceState::Active, &mut Registry::default(), cancel.clone())
            .await
            .unwrap();
        a.set_claim(0, PartitionClaim::JOINING).await;
        until(&c, "c sees everyone", |r| r.instances.len() == 3).await;
        until(&c, "c sees a's pending partition", |r| {
            r.partitions.get(&0).is_some_and(|p| p.state == PartitionState::Pending)
        })
        .await;
        a.set_claim(0, PartitionClaim { state: PartitionState::Active, since_ms: 5 }).await;
        a.set_state(InstanceState::Active).await;
        until(&b, "b sees partition 0 active", |r| r.active_partitions() == vec![0]).await;
        until(&b, "b reads partition 0 from a", |r| {
            r.partition_reads("zone-a", 0).is_ok_and(|reads| reads[0].candidates == vec!["http://ingester-zone-a-0"])
        })
        .await;
        a.leave().await;
        until(&b, "b no longer reads a", |r| r.partition_reads("zone-a", 0).is_err()).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("tidemark_partition_ring_partitions"), "{text}");
        cancel.cancel();
    }
}
