//! Helpers of the tests that gossip over real UDP sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::gossip::{GossipConfig, Membership};
use crate::model::RingSnapshot;

pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    s.local_addr().expect("its address").port()
}

/// Gossip on loopback, fast rounds.
pub fn gossip_config(port: u16, join: Vec<String>, cluster_label: &str) -> GossipConfig {
    GossipConfig {
        join,
        bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        bind_port: port,
        advertise_addr: None,
        cluster_label: cluster_label.into(),
        gossip_interval: Duration::from_millis(50),
        left_members_timeout: Duration::from_secs(60),
        forget_inactive_after: Duration::from_secs(13 * 3600),
    }
}

/// Waits (20 s at most) until `f` holds for `m`'s ring.
pub async fn until(m: &Membership, what: &str, f: impl Fn(&RingSnapshot) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f(&m.snapshot()) {
        assert!(tokio::time::Instant::now() < deadline, "{what}: {:#?}", m.snapshot());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
