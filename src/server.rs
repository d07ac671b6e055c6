//! Wires the components a target runs into one HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tidemark_ingest_log::embedded::EmbeddedLog;
use tidemark_ingest_log::kafka::KafkaLog;
use tidemark_ingest_log::IngestLog;
use tidemark_partition_consumers::metrics::IngesterMetrics;
use tidemark_partition_consumers::Ingester;
use tidemark_producers::http::PushState;
use tidemark_producers::metrics::DistributorMetrics;
use tidemark_producers::Distributor;
use tidemark_block_builder::{BlockBuilder, BlockBuilderMetrics};
use tidemark_block_storage::BucketIndex;
use tidemark_query::{ApiState, IngesterClient, TieredQueryable};
use tidemark_storage::wire::STORE_GATEWAY_API_PREFIX;
use tidemark_storage::Queryable;
use tidemark_store_gateway::{BlockStore, StoreGatewayMetrics};
use tidemark_ring::{InstanceState, Membership, PartitionLifecycler};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Clone)]
struct AppState {
    registry: Arc<Mutex<Registry>>,
    ingester: Option<Arc<Ingester>>,
    config_yaml: Arc<String>,
}

/// Opens the ingest log the configuration names.
pub async fn open_log(cfg: &Config, registry: &mut Registry) -> anyhow::Result<Arc<dyn IngestLog>> {
    if cfg.uses_kafka() {
        let kafka = &cfg.ingest_storage.kafka;
        tracing::info!(address = %kafka.address, topic = %kafka.topic, "connecting to Kafka");
        let log = KafkaLog::connect(kafka)
            .await
            .context("cannot use the Kafka ingest log")?;
        Ok(Arc::new(log))
    } else {
        let ecfg = cfg.embedded_log();
        tracing::info!(dir = %ecfg.dir.display(), partitions = ecfg.partitions, "opening the embedded ingest log");
        let log = tokio::task::spawn_blocking(move || EmbeddedLog::open(ecfg))
            .await
            .context("embedded log start-up panicked")?
            .context("cannot open the embedded ingest log")?;
        log.metrics().register(registry);
        Ok(Arc::new(log))
    }
}

/// Runs the configured target until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let addr: SocketAddr = format!(
        "{}:{}",
        cfg.server.http_listen_address, cfg.server.http_listen_port
    )
    .parse()
    .with_context(|| {
        format!(
            "invalid listen address {}:{}",
            cfg.server.http_listen_address, cfg.server.http_listen_port
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;

    let mut registry = Registry::default();
    let build_info =
        prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
    build_info
        .get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
        .set(1);
    registry.register("tidemark_build_info", "Tidemark version", build_info);

    let cancel = CancellationToken::new();
    let log = if cfg.target.uses_log() {
        Some(open_log(&cfg, &mut registry).await?)
    } else {
        None
    };
    let bucket = if cfg.target.uses_bucket() {
        tracing::info!(backend = ?cfg.blocks_storage.backend, "opening the blocks bucket");
        Some(
            cfg.blocks_storage
                .open(&cfg.default_bucket_dir())
                .context("cannot open the blocks bucket")?,
        )
    } else {
        None
    };

    let mut app = Router::new();
    let mut tasks = Vec::new();
    let mut ingester = None;
    let mut ring_partitions: Vec<i32> = Vec::new();

    // Membership: gossip when -memberlist.join names members.
    let membership = if cfg.memberlist.enabled() {
        let gossip = cfg.memberlist.gossip(cfg.ring.delete_inactive_partition_after);
        let local = crate::membership::local_member(&cfg, tidemark_ring::gossip::advertise_ip(&gossip).await);
        let state = if cfg.target.runs_ingester() {
            InstanceState::Joining
        } else {
            InstanceState::Active
        };
        tracing::info!(id = %local.id, zone = %local.zone, addr = %local.addr, roles = ?local.roles, "joining the ring");
        Some(
            Membership::start(&gossip, local, state, &mut registry, cancel.clone())
                .await
                .context("cannot start gossip membership")?,
        )
    } else {
        None
    };

    // Per-tenant limits: defaults from the configuration, overrides from
    // the runtime configuration file, shared by every component.
    let overrides = tidemark_limits::Overrides::load(
        cfg.limits.clone(),
        &cfg.runtime_config,
        tidemark_limits::RuntimeConfigMetrics::new(&mut registry),
    )
    .context("cannot load the runtime configuration (-runtime-config.file)")?;
    tasks.push(tokio::spawn(
        overrides
            .clone()
            .run_reloader(cfg.runtime_config.period, cancel.clone()),
    ));
    app = app.merge(tidemark_limits::http::router(
        overrides.clone(),
        cfg.multitenancy_enabled,
    ));

    if let (true, Some(log)) = (cfg.target.runs_distributor(), &log) {
        let metrics = Arc::new(DistributorMetrics::new(&mut registry));
        let mut d = Distributor::new(log.clone(), cfg.distributor.clone(), metrics)
            .with_overrides(overrides.clone());
        if let Some(m) = &membership {
            d = d.with_active_partitions(crate::membership::active_partitions(m.watch()));
        }
        app = app.merge(tidemark_producers::http::router(PushState {
            distributor: Arc::new(d),
            multitenancy_enabled: cfg.multitenancy_enabled,
        }));
    }
    if let (true, Some(log)) = (cfg.target.runs_ingester(), &log) {
        let partitions = cfg.ingester_partitions(log.partition_count())?;
        let group = cfg
            .ingester
            .consumer_group
            .clone()
            .unwrap_or_else(|| cfg.instance_id.clone());
        tracing::info!(?partitions, group = %group, "starting partition consumers");
        let metrics = IngesterMetrics::new(&mut registry);
        let mut ingester_cfg = cfg.ingester.clone();
        ingester_cfg.blocks_consumer_group = Some(cfg.block_builder.consumer_group.clone());
        let (ing, handles) = Ingester::start_with_limits(
            log.clone(),
            &partitions,
            &group,
            &ingester_cfg,
            metrics,
            Some(overrides.clone()),
            cancel.clone(),
        );
        tasks.extend(handles);
        app = app.merge(tidemark_partition_consumers::api::router(ing.clone()));
        match &membership {
            Some(m) => {
                let ready_ing = ing.clone();
                let lifecycler = PartitionLifecycler::start(
                    m.clone(),
                    &partitions,
                    cfg.ring.min_partition_owners_duration,
                    Arc::new(move || ready_ing.ready().is_ok()),
                    cancel.clone(),
                )
                .await;
                app = app.merge(tidemark_ring::http::downscale_router(lifecycler));
            }
            None => ring_partitions = partitions.clone(),
        }
        ingester = Some(ing);
    }
    if let (true, Some(log), Some(bucket)) = (cfg.target.runs_block_builder(), &log, &bucket) {
        let builder = BlockBuilder::new(
            log.clone(),
            bucket.clone(),
            cfg.block_builder.clone(),
            BlockBuilderMetrics::new(&mut registry),
        );
        tasks.push(tokio::spawn(builder.run(cancel.clone())));
    }
    if let (true, Some(bucket)) = (cfg.target.runs_compactor(), &bucket) {
        let compactor = tidemark_compactor::Compactor::new(
            bucket.clone(),
            cfg.compactor.clone(),
            tidemark_compactor::CompactorMetrics::new(&mut registry),
        );
        tasks.push(tokio::spawn(compactor.run(cancel.clone())));
    }
    let mut block_store = None;
    if let (true, Some(bucket)) = (cfg.target.runs_store_gateway(), &bucket) {
        let store = BlockStore::new(
            Arc::new(BucketIndex::new(bucket.clone())),
            cfg.store_gateway.clone(),
            StoreGatewayMetrics::new(&mut registry),
        );
        if let Err(e) = store.sync().await {
            tracing::warn!(error = %e, "first bucket index refresh failed; retrying in the background");
        }
        tasks.push(tokio::spawn(tidemark_store_gateway::run_sync(
            store.clone(),
            cancel.clone(),
        )));
        app = app.merge(tidemark_store_gateway::api::router(store.clone()));
        block_store = Some(store);
    }
    if cfg.target.runs_querier() {
        let timeout = cfg.querier.ingester_client_timeout;
        let zone = if cfg.ring.querier_prefer_availability_zone.is_empty() {
            crate::membership::zone_of(&cfg)
        } else {
            cfg.ring.querier_prefer_availability_zone.clone()
        };
        let client_error = |e| anyhow::anyhow!("cannot create the ingester client: {e}");
        let recent: Arc<dyn Queryable> = match (&ingester, &membership) {
            (Some(ing), _) if cfg.querier.ingester_addresses.is_empty() => ing.clone(),
            (_, Some(m)) if cfg.querier.ingester_addresses.is_empty() => Arc::new(
                IngesterClient::from_ring(
                    m.watch(),
                    zone.clone(),
                    cfg.querier.query_ingesters_within,
                    timeout,
                )
                .map_err(client_error)?,
            ),
            _ => Arc::new(
                IngesterClient::new(cfg.querier.ingester_addresses.clone(), timeout)
                    .map_err(client_error)?,
            ),
        };
        let store: Option<Arc<dyn Queryable>> = match (&block_store, &cfg.querier.store_gateway_addresses, &membership) {
            (Some(s), _, _) => Some(Arc::new(s.clone())),
            (None, a, _) if !a.is_empty() => Some(Arc::new(
                IngesterClient::new(a.clone(), timeout)
                    .map_err(client_error)?
                    .with_api(STORE_GATEWAY_API_PREFIX, "store-gateway"),
            )),
            (None, _, Some(m)) => Some(Arc::new(
                IngesterClient::any_of_role(m.watch(), "store-gateway", zone.clone(), timeout)
                    .map_err(client_error)?
                    .with_api(STORE_GATEWAY_API_PREFIX, "store-gateway"),
            )),
            _ => {
                tracing::warn!("no store-gateway configured (-querier.store-gateway-addresses): queries read the ingesters only");
                None
            }
        };
        let queryable: Arc<dyn Queryable> = match store {
            Some(store) => Arc::new(TieredQueryable::new(recent, store, cfg.tiered_options())),
            None => recent,
        };
        let state = ApiState::new(
            queryable,
            cfg.querier.engine.clone(),
            cfg.multitenancy_enabled,
            &mut registry,
        )
        .with_strong_read_consistency(
            cfg.querier.read_consistency == crate::config::ReadConsistency::Strong,
        );
        app = app.merge(tidemark_query::router(state));
    }

    // Ring status pages: the gossiped ring, or this process alone.
    let ring = match &membership {
        Some(m) => m.watch(),
        None => {
            let local = crate::membership::local_member(&cfg, std::net::IpAddr::from([127, 0, 0, 1]));
            watch::channel(Arc::new(tidemark_ring::single_process_ring(&local, &ring_partitions))).1
        }
    };
    app = app.merge(tidemark_ring::http::router(ring));

    let state = AppState {
        registry: Arc::new(Mutex::new(registry)),
        ingester: ingester.clone(),
        config_yaml: Arc::new(cfg.to_yaml()),
    };
    let status = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/config", get(config))
        .with_state(state);
    let app = app.merge(status);

    tracing::info!(
        %addr,
        target = ?cfg.target,
        log = if cfg.uses_kafka() { "kafka" } else { "embedded" },
        multitenancy = cfg.multitenancy_enabled,
        "Tidemark started"
    );
    let shutdown = cancel.clone();
    let leaving = membership.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            // Leave the ring first, so that queriers stop choosing this
            // process while it still answers.
            if let Some(m) = leaving {
                m.leave().await;
            }
            shutdown.cancel();
        })
        .await
        .context("HTTP server failed")?;
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn index() -> &'static str {
    "Tidemark\n\nPush: POST /api/v1/push (Prometheus remote write)\nQuery: /prometheus/api/v1/query, /api/v1/query, ...\nStatus: /ready /metrics /config /memberlist /ingester/ring /ingester/partition-ring\n"
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry.lock()) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.ingester.as_ref().map(|i| i.ready()) {
        Some(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
        _ => (StatusCode::OK, "ready\n").into_response(),
    }
}

async fn config(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        s.config_yaml.as_str().to_owned(),
    )
        .into_response()
}
