//! Logs and traces. Logs go to stderr, as text or, with `OPENGUILD_LOG_FORMAT=json`, as one
//! JSON object per line, filtered by `OPENGUILD_LOG` (default `info`). With
//! `OPENGUILD_OTLP_ENDPOINT` set (a collector's OTLP/HTTP base URL, e.g.
//! `http://127.0.0.1:4318`) and the `otlp` feature built in, spans are exported too: a
//! request, its GraphQL operation and resolvers, the command, the append (with the event
//! ids and position) and the read models it waited for, in one trace. Unset, nothing is
//! exported and no exporter is built.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes the exporter when dropped, so the last spans leave before the process does.
pub struct Guard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Sets up logging (and, if asked for, trace export) for the whole process.
pub fn init() -> anyhow::Result<Guard> {
    let filter = || EnvFilter::try_from_env("OPENGUILD_LOG").unwrap_or_else(|_| "info".into());
    let json = match std::env::var("OPENGUILD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Err(_) => false,
        Ok(other) => anyhow::bail!("OPENGUILD_LOG_FORMAT={other:?}: use text (the default) or json"),
    };
    let logs = if json {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter()));
    let endpoint = std::env::var("OPENGUILD_OTLP_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = endpoint {
        let provider = otlp::provider(&endpoint)?;
        use opentelemetry::trace::TracerProvider as _;
        let traces = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("openguild"))
            .with_filter(EnvFilter::new("openguild=info,openguild_api=info,openguild_projections=info,off"));
        registry.with(traces).init();
        return Ok(Guard { provider: Some(provider) });
    }
    #[cfg(not(feature = "otlp"))]
    if endpoint.is_some() {
        registry.init();
        tracing::warn!(
            "OPENGUILD_OTLP_ENDPOINT is set, but this build has no OTLP exporter: build with --features otlp"
        );
        return Ok(Guard {});
    }
    registry.init();
    Ok(Guard {
        #[cfg(feature = "otlp")]
        provider: None,
    })
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry_otlp::{Protocol, WithExportConfig};

    /// Spans batched and sent to `endpoint`/v1/traces over HTTP, as protobuf or, with
    /// `OPENGUILD_OTLP_PROTOCOL=http/json`, JSON.
    pub fn provider(endpoint: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
        let protocol = match std::env::var("OPENGUILD_OTLP_PROTOCOL").as_deref() {
            Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
            Ok("http/json") => Protocol::HttpJson,
            Ok(other) => {
                anyhow::bail!("OPENGUILD_OTLP_PROTOCOL={other:?}: use http/protobuf (the default) or http/json")
            }
        };
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(url)
            .build()
            .map_err(|e| anyhow::anyhow!("OPENGUILD_OTLP_ENDPOINT={endpoint}: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("openguild").build();
        Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    }
}
