//! `bosun sample <app> …`: each sample as a subcommand, configured by flags and by the
//! environment variables the real images read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use crate::bookinfo::productpage::{self, ProductpageConfig};
use crate::bookinfo::reviews::{self, ReviewsConfig, ReviewsVersion};
use crate::bookinfo::{ServiceAddress, details, ratings};
use crate::curl::{self, CurlArgs};
use crate::helloworld::{self, HelloworldConfig};
use crate::{Error, HttpClient, bind, httpbin, sleep, tcp_echo};

/// A sample application to run in the foreground.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Sample {
    /// Bookinfo's product page (image examples-bookinfo-productpage-v1).
    Productpage(ProductpageArgs),
    /// Bookinfo's details service (image examples-bookinfo-details-v1).
    Details(ListenArgs<9080>),
    /// Bookinfo's reviews service, v1, v2 or v3 (images examples-bookinfo-reviews-v*).
    Reviews(ReviewsArgs),
    /// Bookinfo's ratings service (image examples-bookinfo-ratings-v1).
    Ratings(ListenArgs<9080>),
    /// go-httpbin's request-inspection endpoints (image mccutchen/go-httpbin).
    Httpbin(ListenArgs<8080>),
    /// Istio's helloworld, v1 or v2 (images examples-helloworld-v*).
    Helloworld(HelloworldArgs),
    /// Istio's tcp-echo server (image tcp-echo-server).
    TcpEcho(TcpEchoArgs),
    /// Do nothing until killed (the sleep and curl client pods).
    Sleep,
    /// A minimal curl that honours HTTP_PROXY.
    Curl(CurlArgs),
}

/// The listening address of a server whose real image listens on `PORT`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs<const PORT: u16> {
    /// Address to listen on [default: 0.0.0.0:<the real app's port>].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

impl<const PORT: u16> ListenArgs<PORT> {
    /// The address to listen on.
    pub fn addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
    }
}

/// productpage's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ProductpageArgs {
    /// Where to listen.
    #[command(flatten)]
    pub listen: ListenArgs<9080>,
    /// Domain appended to the backends' host names.
    #[arg(long, env = "SERVICES_DOMAIN", value_name = "DOMAIN")]
    pub services_domain: Option<String>,
    /// Host name of details [default: details].
    #[arg(long, env = "DETAILS_HOSTNAME", value_name = "HOST")]
    pub details_hostname: Option<String>,
    /// Port of details [default: 9080].
    #[arg(long, env = "DETAILS_SERVICE_PORT", value_name = "PORT")]
    pub details_port: Option<u16>,
    /// Host name of reviews [default: reviews].
    #[arg(long, env = "REVIEWS_HOSTNAME", value_name = "HOST")]
    pub reviews_hostname: Option<String>,
    /// Port of reviews [default: 9080].
    #[arg(long, env = "REVIEWS_SERVICE_PORT", value_name = "PORT")]
    pub reviews_port: Option<u16>,
    /// Host name of ratings [default: ratings].
    #[arg(long, env = "RATINGS_HOSTNAME", value_name = "HOST")]
    pub ratings_hostname: Option<String>,
    /// Port of ratings [default: 9080].
    #[arg(long, env = "RATINGS_SERVICE_PORT", value_name = "PORT")]
    pub ratings_port: Option<u16>,
}

impl ProductpageArgs {
    /// The configuration these flags describe, with the proxy settings of the environment.
    pub fn config(&self) -> Result<ProductpageConfig, Error> {
        let domain = self.services_domain.as_deref();
        Ok(ProductpageConfig {
            details: ServiceAddress::bookinfo(
                "details",
                self.details_hostname.as_deref(),
                domain,
                self.details_port,
            ),
            reviews: ServiceAddress::bookinfo(
                "reviews",
                self.reviews_hostname.as_deref(),
                domain,
                self.reviews_port,
            ),
            ratings: ServiceAddress::bookinfo(
                "ratings",
                self.ratings_hostname.as_deref(),
                domain,
                self.ratings_port,
            ),
            client: HttpClient::from_env()?,
            ..ProductpageConfig::default()
        })
    }
}

/// reviews' flags. The version sets what the image bakes in; `ENABLE_RATINGS` and
/// `STAR_COLOR` override it as they do for the real image.
#[derive(Debug, Clone, clap::Args)]
pub struct ReviewsArgs {
    /// Where to listen.
    #[command(flatten)]
    pub listen: ListenArgs<9080>,
    /// Which image to behave as.
    #[arg(
        long,
        env = "SERVICE_VERSION",
        value_enum,
        ignore_case = true,
        default_value = "v1"
    )]
    pub service_version: ReviewsVersion,
    /// Whether to call ratings (`true` or anything else) [default: from the version].
    #[arg(long, env = "ENABLE_RATINGS", value_name = "BOOL")]
    pub enable_ratings: Option<String>,
    /// Colour of the stars [default: black for v2, red for v3].
    #[arg(long, env = "STAR_COLOR", value_name = "COLOR")]
    pub star_color: Option<String>,
    /// Domain appended to ratings' host name.
    #[arg(long, env = "SERVICES_DOMAIN", value_name = "DOMAIN")]
    pub services_domain: Option<String>,
    /// Host name of ratings [default: ratings].
    #[arg(long, env = "RATINGS_HOSTNAME", value_name = "HOST")]
    pub ratings_hostname: Option<String>,
    /// Port of ratings [default: 9080].
    #[arg(long, env = "RATINGS_SERVICE_PORT", value_name = "PORT")]
    pub ratings_port: Option<u16>,
    /// Reported as `podname`.
    #[arg(long, env = "HOSTNAME", value_name = "NAME", default_value = "")]
    pub pod_name: String,
    /// Reported as `clustername`.
    #[arg(long, env = "CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: Option<String>,
}

impl ReviewsArgs {
    /// The configuration these flags describe, with the proxy settings of the environment.
    pub fn config(&self) -> Result<ReviewsConfig, Error> {
        let mut config = ReviewsConfig::for_version(self.service_version);
        if let Some(enabled) = &self.enable_ratings {
            // Java's Boolean.valueOf: only "true", in any case, is true.
            config.ratings_enabled = enabled.eq_ignore_ascii_case("true");
        }
        if let Some(color) = &self.star_color {
            config.star_color.clone_from(color);
        }
        config.ratings_timeout = ReviewsConfig::default_ratings_timeout(&config.star_color);
        config.ratings = ServiceAddress::bookinfo(
            "ratings",
            self.ratings_hostname.as_deref(),
            self.services_domain.as_deref(),
            self.ratings_port,
        );
        config.pod_name.clone_from(&self.pod_name);
        config.cluster_name.clone_from(&self.cluster_name);
        config.client = HttpClient::from_env()?;
        Ok(config)
    }
}

/// helloworld's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HelloworldArgs {
    /// Where to listen.
    #[command(flatten)]
    pub listen: ListenArgs<5000>,
    /// The version to report.
    #[arg(long, env = "SERVICE_VERSION", default_value = "v1")]
    pub service_version: String,
    /// The instance to report.
    #[arg(long, env = "HOSTNAME", value_name = "NAME", default_value = "")]
    pub instance: String,
}

/// tcp-echo's arguments, as the image's: `"9000,9001,9002" "hello"`.
#[derive(Debug, Clone, clap::Args)]
pub struct TcpEchoArgs {
    /// Comma-separated ports to listen on.
    pub ports: String,
    /// Prefix of every answer.
    pub prefix: String,
    /// IP address to listen on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub listen: IpAddr,
}

/// Runs `sample` until it ends: servers run until the process is killed, curl returns its
/// exit code.
pub async fn run(sample: Sample) -> anyhow::Result<ExitCode> {
    match sample {
        Sample::Productpage(args) => {
            let config = args.config()?;
            let listener = listen("productpage", args.listen.addr()).await?;
            productpage::serve(listener, config).await;
        }
        Sample::Details(args) => {
            details::serve(listen("details", args.addr()).await?).await;
        }
        Sample::Reviews(args) => {
            let config = args.config()?;
            let listener = listen("reviews", args.listen.addr()).await?;
            reviews::serve(listener, config).await;
        }
        Sample::Ratings(args) => {
            ratings::serve(listen("ratings", args.addr()).await?).await;
        }
        Sample::Httpbin(args) => {
            httpbin::serve(listen("httpbin", args.addr()).await?).await;
        }
        Sample::Helloworld(args) => {
            let config = HelloworldConfig {
                version: args.service_version,
                instance: args.instance,
            };
            let listener = listen("helloworld", args.listen.addr()).await?;
            helloworld::serve(listener, config).await;
        }
        Sample::TcpEcho(args) => {
            let mut listeners = Vec::new();
            for port in tcp_echo::parse_ports(&args.ports)? {
                listeners.push(listen("tcp-echo", SocketAddr::new(args.listen, port)).await?);
            }
            tcp_echo::serve(listeners, args.prefix).await;
        }
        Sample::Sleep => sleep::forever().await,
        Sample::Curl(args) => return Ok(ExitCode::from(curl::main(&args).await)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn listen(app: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let listener = bind(addr).await?;
    tracing::info!(app, %addr, "sample listening");
    Ok(listener)
}

/// The `bosun sample` arguments standing in for a container image of Istio's samples
/// (registry, tag and digest ignored), or `None` for other images. The container's own
/// `args` go after them (tcp-echo's ports and prefix).
pub fn sample_args_for_image(image: &str) -> Option<Vec<&'static str>> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (repository, _) = match without_digest.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry port.
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (without_digest, ""),
    };
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let args: &[&'static str] = match name {
        "examples-bookinfo-productpage-v1" => &["productpage"],
        "examples-bookinfo-details-v1" => &["details"],
        "examples-bookinfo-reviews-v1" => &["reviews", "--service-version", "v1"],
        "examples-bookinfo-reviews-v2" => &["reviews", "--service-version", "v2"],
        "examples-bookinfo-reviews-v3" => &["reviews", "--service-version", "v3"],
        "examples-bookinfo-ratings-v1" => &["ratings"],
        "examples-helloworld-v1" => &["helloworld", "--service-version", "v1"],
        "examples-helloworld-v2" => &["helloworld", "--service-version", "v2"],
        "go-httpbin" => &["httpbin"],
        // The older Istio sample ran Python httpbin, which listens on port 80.
        "httpbin" => &["httpbin", "--listen", "0.0.0.0:80"],
        "tcp-echo-server" => &["tcp-echo"],
        _ => return None,
    };
    Some(args.to_vec())
}
