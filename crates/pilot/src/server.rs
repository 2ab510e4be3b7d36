//! The running pilot: the store, the debounced builder of push contexts, the ADS server and
//! the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::context::{MeshConfig, PushContext};
use crate::store::{Store, StoreError};
use crate::xds::{AdsServer, SyncRegistry};

/// How pilot runs.
#[derive(Clone, Debug)]
pub struct PilotOptions {
    /// Where the config store lives; in memory when `None`.
    pub config_dir: Option<PathBuf>,
    /// The ADS (gRPC) address.
    pub xds_address: SocketAddr,
    /// The HTTP API address.
    pub http_address: SocketAddr,
    /// Mesh-wide settings.
    pub mesh: MeshConfig,
    /// Changes closer than this to the previous push are gathered into one push.
    pub debounce: Duration,
    /// The longest a push waits for changes to stop.
    pub debounce_max: Duration,
    /// Where Services without a `clusterIP` get one (pilot as a local API server); none
    /// are given when `None`.
    pub cluster_ip_range: Option<ipnet::Ipv4Net>,
}

impl Default for PilotOptions {
    fn default() -> Self {
        PilotOptions {
            config_dir: None,
            xds_address: SocketAddr::from(([127, 0, 0, 1], 15010)),
            http_address: SocketAddr::from(([127, 0, 0, 1], 15014)),
            mesh: MeshConfig::default(),
            debounce: Duration::from_millis(100),
            debounce_max: Duration::from_secs(1),
            cluster_ip_range: None,
        }
    }
}

/// Why pilot could not start.
#[derive(Debug, thiserror::Error)]
pub enum PilotError {
    /// The config store could not be opened.
    #[error("config store: {0}")]
    Store(#[from] StoreError),
    /// An address could not be bound.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running pilot. Dropping it does not stop it: call [`Pilot::shutdown`].
#[derive(Debug)]
pub struct Pilot {
    store: Store,
    sync: Arc<SyncRegistry>,
    contexts: watch::Receiver<Arc<PushContext>>,
    xds_address: SocketAddr,
    http_address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pilot {
    /// Opens the store, binds both listeners and starts serving.
    pub async fn start(options: PilotOptions) -> Result<Pilot, PilotError> {
        let store = match &options.config_dir {
            Some(dir) => {
                let (store, warnings) = Store::open(dir)?;
                for warning in warnings {
                    tracing::warn!(path = %warning.path.display(), "{}", warning.message);
                }
                store
            }
            None => Store::in_memory(),
        };
        Self::start_with_store(store, options).await
    }

    /// Starts serving an existing store.
    pub async fn start_with_store(
        store: Store,
        options: PilotOptions,
    ) -> Result<Pilot, PilotError> {
        let store = match options.cluster_ip_range {
            Some(range) => store.with_cluster_ips(range),
            None => store,
        };
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| PilotError::Bind { address, source })
        };
        let xds_listener = bind(options.xds_address).await?;
        let http_listener = bind(options.http_address).await?;
        let xds_address = local_address(&xds_listener, options.xds_address)?;
        let http_address = local_address(&http_listener, options.http_address)?;

        // Subscribed before the first build: a change made from now on makes a push.
        let revisions = store.subscribe();
        let initial = build_context(&store, &options.mesh, None).await;
        let (context_sender, contexts) = watch::channel(initial);
        let sync = Arc::new(SyncRegistry::default());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();

        tasks.push(tokio::spawn(debounce_pushes(
            store.clone(),
            revisions,
            options.clone(),
            context_sender,
            stopped.clone(),
        )));

        let ads = AdsServer::new(contexts.clone(), sync.clone()).into_service();
        let mut xds_stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            // TCP_NODELAY, as tonic sets on the sockets it binds itself: with Nagle, the tail
            // of a large response waits for the ACK of what went before it, and a push to
            // hundreds of proxies took twice as long.
            let incoming =
                tonic::transport::server::TcpIncoming::from(xds_listener).with_nodelay(Some(true));
            let result = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(ads)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = xds_stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "xDS server failed");
            }
        }));

        let router = api::router(ApiState {
            store: store.clone(),
            sync: sync.clone(),
            contexts: contexts.clone(),
        });
        let mut http_stopped = stopped;
        tasks.push(tokio::spawn(async move {
            let result = axum::serve(http_listener, router)
                .with_graceful_shutdown(async move {
                    let _ = http_stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "HTTP API failed");
            }
        }));
        tracing::info!(%xds_address, %http_address, "pilot serving");
        Ok(Pilot {
            store,
            sync,
            contexts,
            xds_address,
            http_address,
            stop,
            tasks,
        })
    }

    /// The ADS address.
    pub fn xds_address(&self) -> SocketAddr {
        self.xds_address
    }

    /// The HTTP API address.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// The config store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Connected proxies.
    pub fn sync(&self) -> &Arc<SyncRegistry> {
        &self.sync
    }

    /// The push context proxies are being served from.
    pub fn context(&self) -> Arc<PushContext> {
        self.contexts.borrow().clone()
    }

    /// A receiver of every new push context.
    pub fn contexts(&self) -> watch::Receiver<Arc<PushContext>> {
        self.contexts.clone()
    }

    /// Stops serving and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            // Streams to proxies may linger; do not wait on them for long.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

fn local_address(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, PilotError> {
    listener.local_addr().map_err(|source| PilotError::Bind {
        address: asked,
        source,
    })
}

/// Builds the context of the store's current snapshot, after `previous` when there is one
/// (taking over what the changes since leave valid).
async fn build_context(
    store: &Store,
    mesh: &MeshConfig,
    previous: Option<Arc<PushContext>>,
) -> Arc<PushContext> {
    let snapshot = store.snapshot();
    let mesh = mesh.clone();
    // Building indexes every service: keep it off the async workers.
    let build = move || match previous {
        Some(previous) => PushContext::build_after(&previous, &snapshot, mesh),
        None => PushContext::build(&snapshot, mesh),
    };
    match tokio::task::spawn_blocking(build).await {
        Ok(context) => Arc::new(context),
        Err(e) => {
            tracing::error!(error = %e, "building the push context failed");
            Arc::new(PushContext::build(&store.snapshot(), MeshConfig::default()))
        }
    }
}

/// Waits for store changes and publishes push contexts. A change after a quiet spell is
/// pushed at once; changes that follow within `debounce` of a push are gathered until they
/// settle (`debounce` of quiet, at most `debounce_max`) and pushed together.
async fn debounce_pushes(
    store: Store,
    mut revisions: watch::Receiver<u64>,
    options: PilotOptions,
    contexts: watch::Sender<Arc<PushContext>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut last_push: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = revisions.changed() => if changed.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
        let in_burst = last_push.is_some_and(|at| at.elapsed() < options.debounce);
        if in_burst {
            let first = Instant::now();
            loop {
                let remaining = options.debounce_max.saturating_sub(first.elapsed());
                let quiet = options.debounce.min(remaining);
                match tokio::time::timeout(quiet, revisions.changed()).await {
                    Ok(Ok(())) if first.elapsed() < options.debounce_max => continue,
                    Ok(Err(_)) => return,
                    _ => break,
                }
            }
        }
        revisions.borrow_and_update();
        let started = Instant::now();
        let previous = contexts.borrow().clone();
        let context = build_context(&store, &options.mesh, Some(previous)).await;
        tracing::debug!(
            revision = context.revision,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "push context built"
        );
        contexts.send_replace(context);
        last_push = Some(Instant::now());
    }
}
