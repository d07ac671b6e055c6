//! Membership settings (`-memberlist.*`, `-ring.*`) and how a process
//! joins the ring: what it announces, how its distributor learns the
//! active partitions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidemark_ring::{GossipConfig, LocalMember, RingSnapshot};
use tokio::sync::watch;

use crate::config::{Config, Target};

/// Gossip membership (Mimir's `memberlist:` block). Off unless
/// `join_members` names at least one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemberlistConfig {
    /// Members to join, `host:port` (any member will do; list several).
    pub join_members: Vec<String>,
    pub bind_addr: String,
    pub bind_port: u16,
    /// Address others gossip with this process at; empty: the address
    /// the host name resolves to.
    pub advertise_addr: String,
    /// Only members with the same label form a cluster.
    pub cluster_label: String,
    #[serde(with = "humantime_serde")]
    pub gossip_interval: Duration,
    /// How long a member that stopped answering stays in the ring (and
    /// the partition states it announced with it).
    #[serde(with = "humantime_serde")]
    pub left_members_timeout: Duration,
}

impl Default for MemberlistConfig {
    fn default() -> Self {
        MemberlistConfig {
            join_members: Vec::new(),
            bind_addr: "0.0.0.0".into(),
            bind_port: 7946,
            advertise_addr: String::new(),
            cluster_label: "tidemark".into(),
            gossip_interval: Duration::from_millis(200),
            left_members_timeout: Duration::from_secs(3600),
        }
    }
}

/// How this process shows in the ring, and the partition ring's timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RingConfig {
    /// Host or IP others reach this process's HTTP server at; empty: the
    /// gossip advertise address.
    pub instance_addr: String,
    /// Port of that address; 0: the HTTP listen port.
    pub instance_port: u16,
    /// Availability zone; empty: `zone-x` from an instance ID such as
    /// `ingester-zone-x-3`, else none.
    pub instance_availability_zone: String,
    /// A new partition takes writes once it has had an owner this long.
    #[serde(with = "humantime_serde")]
    pub min_partition_owners_duration: Duration,
    /// Zone a querier reads from first; empty: its own.
    pub querier_prefer_availability_zone: String,
    /// An inactive partition without a healthy owner leaves the ring once
    /// inactive this long.
    #[serde(with = "humantime_serde")]
    pub delete_inactive_partition_after: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            instance_addr: String::new(),
            instance_port: 0,
            instance_availability_zone: String::new(),
            min_partition_owners_duration: Duration::from_secs(10),
            querier_prefer_availability_zone: String::new(),
            delete_inactive_partition_after: Duration::from_secs(13 * 3600),
        }
    }
}

impl MemberlistConfig {
    pub fn enabled(&self) -> bool {
        !self.join_members.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        self.bind_addr
            .parse::<IpAddr>()
            .map_err(|_| format!("-memberlist.bind-addr {:?} is not an IP address", self.bind_addr))?;
        if !self.advertise_addr.is_empty() {
            self.advertise_addr.parse::<IpAddr>().map_err(|_| {
                format!("-memberlist.advertise-addr {:?} is not an IP address", self.advertise_addr)
            })?;
        }
        for m in &self.join_members {
            let port = m.rsplit_once(':').and_then(|(host, p)| (!host.is_empty()).then_some(p));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(format!("-memberlist.join member {m:?} is not host:port"));
            }
        }
        if self.gossip_interval.is_zero() {
            return Err("-memberlist.gossip-interval must be positive".into());
        }
        if self.cluster_label.is_empty() {
            return Err("-memberlist.cluster-label must not be empty".into());
        }
        Ok(())
    }

    /// The gossip settings; inactive partitions without owners are
    /// forgotten after `forget_inactive_after`.
    pub fn gossip(&self, forget_inactive_after: Duration) -> GossipConfig {
        GossipConfig {
            join: self.join_members.clone(),
            // Both checked by `validate`.
            bind_addr: self.bind_addr.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            bind_port: self.bind_port,
            advertise_addr: self.advertise_addr.parse().ok(),
            cluster_label: self.cluster_label.clone(),
            gossip_interval: self.gossip_interval,
            left_members_timeout: self.left_members_timeout,
            forget_inactive_after,
        }
    }
}

/// The zone of an instance: the configured one, else `zone-x` out of an
/// ID like `ingester-zone-x-3`.
pub fn zone_of(cfg: &Config) -> String {
    if !cfg.ring.instance_availability_zone.is_empty() {
        return cfg.ring.instance_availability_zone.clone();
    }
    let parts: Vec<&str> = cfg.instance_id.split('-').collect();
    parts
        .windows(2)
        .find(|w| w[0] == "zone" && !w[1].is_empty())
        .map(|w| format!("zone-{}", w[1]))
        .unwrap_or_default()
}

/// The roles a target announces.
pub fn roles(target: Target) -> Vec<String> {
    let mut roles = Vec::new();
    for (runs, role) in [
        (target.runs_distributor(), "distributor"),
        (target.runs_ingester(), "ingester"),
        (target.runs_querier(), "querier"),
        (target.runs_store_gateway(), "store-gateway"),
        (target.runs_block_builder(), "block-builder"),
        (target.runs_compactor(), "compactor"),
    ] {
        if runs {
            roles.push(role.to_owned());
        }
    }
    roles
}

/// This process as the ring shows it; `advertise_ip` is the gossip
/// advertise address, the default host of its HTTP address.
pub fn local_member(cfg: &Config, advertise_ip: IpAddr) -> LocalMember {
    let host = if cfg.ring.instance_addr.is_empty() {
        match advertise_ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        }
    } else {
        cfg.ring.instance_addr.clone()
    };
    let port = if cfg.ring.instance_port == 0 {
        cfg.server.http_listen_port
    } else {
        cfg.ring.instance_port
    };
    LocalMember {
        id: cfg.instance_id.clone(),
        zone: zone_of(cfg),
        addr: format!("http://{host}:{port}"),
        roles: roles(cfg.target),
    }
}

/// Active partitions of the ring as they change, for the distributor.
pub fn active_partitions(mut ring: watch::Receiver<Arc<RingSnapshot>>) -> watch::Receiver<Arc<[i32]>> {
    let first: Arc<[i32]> = ring.borrow_and_update().active_partitions().into();
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        while ring.changed().await.is_ok() {
            let active: Arc<[i32]> = ring.borrow_and_update().active_partitions().into();
            tx.send_if_modified(|current| {
                if *current == active {
                    false
                } else {
                    tracing::info!(active = ?active, "active partitions changed");
                    *current = active;
                    true
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_from_ids_or_flags() {
        let mut c = Config {
            instance_id: "ingester-zone-b-3".into(),
            ..Config::default()
        };
        assert_eq!(zone_of(&c), "zone-b");
        c.instance_id = "querier-1".into();
        assert_eq!(zone_of(&c), "");
        c.ring.instance_availability_zone = "eu-1a".into();
        assert_eq!(zone_of(&c), "eu-1a");
    }

    #[test]
    fn member_address_and_roles() {
        let mut c = Config {
            instance_id: "ingester-zone-a-0".into(),
            target: Target::Ingester,
            ..Config::default()
        };
        c.server.http_listen_port = 9101;
        let m = local_member(&c, "10.0.0.7".parse().unwrap());
        assert_eq!(m.addr, "http://10.0.0.7:9101");
        assert_eq!(m.roles, vec!["ingester"]);
        assert_eq!(m.zone, "zone-a");
        c.ring.instance_addr = "ingester-zone-a-0.svc".into();
        c.ring.instance_port = 80;
        assert_eq!(local_member(&c, "10.0.0.7".parse().unwrap()).addr, "http://ingester-zone-a-0.svc:80");
        assert_eq!(roles(Target::All).len(), 6);
    }

    #[test]
    fn memberlist_validation() {
        let ok = MemberlistConfig {
            join_members: vec!["tidemark-distributor:7946".into(), "10.0.0.1:7946".into()],
            ..MemberlistConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(MemberlistConfig::default().validate().is_ok(), "off");
        for bad in ["nohost", ":7946", "host:x", "host:70000"] {
            let c = MemberlistConfig {
                join_members: vec![bad.into()],
                ..MemberlistConfig::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let c = MemberlistConfig {
            advertise_addr: "not-an-ip".into(),
            ..ok.clone()
        };
        assert!(c.validate().is_err());
    }
}
