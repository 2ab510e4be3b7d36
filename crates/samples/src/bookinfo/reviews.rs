//! Bookinfo's `reviews` service (`examples-bookinfo-reviews-v1/v2/v3`): two reviews of the
//! book; v2 and v3 add each reviewer's stars from `ratings`, in black (v2) or red (v3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::ServiceAddress;
use crate::HttpClient;
use crate::propagation::forward_headers;
use crate::server::{self, Response};

/// The two reviews every version serves.
const REVIEWS: [(&str, &str); 2] = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
];

/// What a review shows instead of stars when `ratings` cannot be reached.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// The three images of `reviews`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewsVersion {
    /// No ratings.
    V1,
    /// Black stars from `ratings`.
    V2,
    /// Red stars from `ratings`.
    V3,
}

/// How `reviews` behaves; [`ReviewsConfig::for_version`] gives the images' settings.
#[derive(Debug, Clone)]
pub struct ReviewsConfig {
    /// Whether reviews carry stars from `ratings` (`ENABLE_RATINGS=true`).
    pub ratings_enabled: bool,
    /// The stars' colour (`STAR_COLOR`).
    pub star_color: String,
    /// Where `ratings` is.
    pub ratings: ServiceAddress,
    /// Limit on each call to `ratings`.
    pub ratings_timeout: Duration,
    /// Reported as `podname` (`HOSTNAME`).
    pub pod_name: String,
    /// Reported as `clustername` (`CLUSTER_NAME`); the real app writes `"null"` when unset.
    pub cluster_name: Option<String>,
    /// The client for calls to `ratings`.
    pub client: HttpClient,
}

impl ReviewsConfig {
    /// The settings baked into the `examples-bookinfo-reviews-{version}` image, with
    /// `ratings:9080` called directly.
    pub fn for_version(version: ReviewsVersion) -> Self {
        let (ratings_enabled, star_color) = match version {
            ReviewsVersion::V1 => (false, "black"),
            ReviewsVersion::V2 => (true, "black"),
            ReviewsVersion::V3 => (true, "red"),
        };
        Self {
            ratings_enabled,
            star_color: star_color.to_owned(),
            ratings: ServiceAddress::bookinfo("ratings", None, None, None),
            ratings_timeout: Self::default_ratings_timeout(star_color),
            pod_name: String::new(),
            cluster_name: None,
            client: HttpClient::direct(),
        }
    }

    /// The real app's timeout on `ratings`: 10 s with black stars, 2.5 s otherwise (so v3
    /// gives up before productpage's own 3 s limit, the point of Istio's timeout task).
    pub fn default_ratings_timeout(star_color: &str) -> Duration {
        if star_color == "black" {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(2500)
        }
    }
}

/// Serves `reviews` on `listener` until the future is dropped:
/// `GET /reviews/{id}` → the reviews, `GET /health` → 200.
pub async fn serve(listener: TcpListener, config: ReviewsConfig) {
    let config = Arc::new(config);
    server::serve(listener, move |request, _peer: SocketAddr| {
        let config = config.clone();
        async move { handle(&config, request).await }
    })
    .await;
}

async fn handle(config: &ReviewsConfig, request: Request<Incoming>) -> Response {
    let path = request.uri().path();
    if request.method() != Method::GET {
        return server::empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    if path == "/health" {
        return server::json(StatusCode::OK, &json!({"status": "Reviews is healthy"}));
    }
    // The real app binds the id to a Java `int`; anything else matches no resource.
    let Some(id) = path
        .strip_prefix("/reviews/")
        .and_then(|id| id.parse::<i32>().ok())
    else {
        return server::empty(StatusCode::NOT_FOUND);
    };
    let stars = if config.ratings_enabled {
        fetch_stars(config, id, request.headers()).await
    } else {
        [None, None]
    };
    server::json(StatusCode::OK, &reviews_json(config, id, stars))
}

/// Each reviewer's stars from `ratings`, `None` where it could not say.
async fn fetch_stars(config: &ReviewsConfig, id: i32, incoming: &HeaderMap) -> [Option<i64>; 2] {
    let url = config.ratings.url(&format!("/ratings/{id}"));
    let mut headers = forward_headers(incoming);
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let response = match config
        .client
        .get(&url, headers, config.ratings_timeout)
        .await
    {
        Ok(response) if response.status() == StatusCode::OK => response,
        Ok(response) => {
            tracing::warn!(%url, status = %response.status(), "ratings answered with an error");
            return [None, None];
        }
        Err(error) => {
            tracing::warn!(%url, error = %error, "cannot reach ratings");
            return [None, None];
        }
    };
    let body: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    let ratings = &body["ratings"];
    REVIEWS.map(|(reviewer, _)| ratings[reviewer].as_i64())
}

fn reviews_json(config: &ReviewsConfig, id: i32, stars: [Option<i64>; 2]) -> Value {
    let reviews: Vec<Value> = REVIEWS
        .iter()
        .zip(stars)
        .map(|((reviewer, text), stars)| {
            let mut review = Map::new();
            review.insert("reviewer".into(), json!(reviewer));
            review.insert("text".into(), json!(text));
            if config.ratings_enabled {
                let rating = match stars {
                    Some(stars) => json!({"stars": stars, "color": config.star_color}),
                    None => json!({"error": RATINGS_UNAVAILABLE}),
                };
                review.insert("rating".into(), rating);
            }
            Value::Object(review)
        })
        .collect();
    json!({
        "id": id.to_string(),
        "podname": config.pod_name,
        "clustername": config.cluster_name.as_deref().unwrap_or("null"),
        "reviews": reviews,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_have_the_images_settings() {
        let v1 = ReviewsConfig::for_version(ReviewsVersion::V1);
        assert!(!v1.ratings_enabled);
        let v2 = ReviewsConfig::for_version(ReviewsVersion::V2);
        assert!(v2.ratings_enabled);
        assert_eq!(v2.star_color, "black");
        assert_eq!(v2.ratings_timeout, Duration::from_secs(10));
        let v3 = ReviewsConfig::for_version(ReviewsVersion::V3);
        assert_eq!(v3.star_color, "red");
        assert_eq!(v3.ratings_timeout, Duration::from_millis(2500));
        assert_eq!(
            v3.ratings.url("/ratings/0"),
            "http://ratings:9080/ratings/0"
        );
    }
}
