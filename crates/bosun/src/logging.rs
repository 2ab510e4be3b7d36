//! Logging to stderr with a level that the proxy's `/logging` endpoint can change.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Envoy's level names to tracing's.
fn directive(level: &str) -> Result<&'static str, String> {
    Ok(match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        other => return Err(format!("unknown log level {other:?}")),
    })
}

/// Installs the logger; returns a function that changes the level.
pub(crate) fn init(level: &str) -> anyhow::Result<bosun_proxy::server::LogLevelSetter> {
    let filter = EnvFilter::try_new(directive(level).map_err(anyhow::Error::msg)?)?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init()
        .ok();
    Ok(Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(directive(level)?).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}
