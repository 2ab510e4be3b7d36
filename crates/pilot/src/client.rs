//! A client of pilot's HTTP API, for the CLI (`bosun apply`, `get`, `delete`,
//! `proxy-status`, `proxy-config`) and for tests.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not one.
    #[error("invalid pilot address {0:?}")]
    Address(String),
    /// Pilot could not be reached.
    #[error("cannot reach pilot at {address}: {source}")]
    Connect {
        /// Where pilot was looked for.
        address: String,
        /// Why.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer could not be read.
    #[error("reading pilot's answer: {0}")]
    Read(String),
    /// Pilot refused the call.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Pilot's message.
        message: String,
        /// The problems found in the documents, one per line.
        problems: Vec<String>,
    },
}

/// The client.
#[derive(Clone, Debug)]
pub struct PilotClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl PilotClient {
    /// A client of the pilot at `address` (`host:port` or `http://host:port`).
    pub fn new(address: &str) -> Result<Self, ClientError> {
        let base = if address.starts_with("http://") {
            address.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        base.parse::<http::Uri>()
            .map_err(|_| ClientError::Address(address.to_owned()))?;
        Ok(PilotClient {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<Value, ClientError> {
        let uri = format!("{}{path_and_query}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::Address(uri.clone()))?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|source| ClientError::Connect {
                    address: self.base.clone(),
                    source,
                })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Read(e.to_string()))?
            .to_bytes();
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Read(e.to_string()))?;
        if status.is_success() {
            return Ok(value);
        }
        Err(ClientError::Refused {
            status,
            message: value["error"]
                .as_str()
                .unwrap_or("request refused")
                .to_owned(),
            problems: value["problems"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn query(pairs: &[(&str, Option<&str>)]) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs {
            if let Some(value) = value {
                serializer.append_pair(key, value);
            }
        }
        let query = serializer.finish();
        if query.is_empty() {
            query
        } else {
            format!("?{query}")
        }
    }

    /// Applies the documents of `text` (named `source` in errors).
    pub async fn apply(
        &self,
        text: String,
        source: &str,
        namespace: Option<&str>,
    ) -> Result<Value, ClientError> {
        let query = Self::query(&[("source", Some(source)), ("namespace", namespace)]);
        self.call(Method::POST, &format!("/apis/v1/apply{query}"), Some(text))
            .await
    }

    /// Deletes the resources the documents of `text` name.
    pub async fn delete_documents(
        &self,
        text: String,
        source: &str,
        namespace: Option<&str>,
    ) -> Result<Value, ClientError> {
        let query = Self::query(&[("source", Some(source)), ("namespace", namespace)]);
        self.call(Method::POST, &format!("/apis/v1/delete{query}"), Some(text))
            .await
    }

    /// Deletes one resource (`kind` as kubectl accepts it).
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/apis/v1/resources/{kind}/{namespace}/{name}"),
            None,
        )
        .await
    }

    /// One resource.
    pub async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.call(
            Method::GET,
            &format!("/apis/v1/resources/{kind}/{namespace}/{name}"),
            None,
        )
        .await
    }

    /// The resources of a kind, in one namespace or all.
    pub async fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Value, ClientError> {
        let query = Self::query(&[("namespace", namespace)]);
        self.call(
            Method::GET,
            &format!("/apis/v1/resources/{kind}{query}"),
            None,
        )
        .await
    }

    /// Connected proxies and their sync state.
    pub async fn syncz(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/debug/syncz", None).await
    }

    /// What pilot generated for a proxy, as Envoy's `/config_dump`.
    pub async fn config_dump(&self, proxy: &str) -> Result<Value, ClientError> {
        let query = Self::query(&[("proxyID", Some(proxy))]);
        self.call(Method::GET, &format!("/debug/config_dump{query}"), None)
            .await
    }

    /// The service registry.
    pub async fn registryz(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/debug/registryz", None).await
    }
}
