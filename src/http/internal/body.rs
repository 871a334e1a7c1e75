//! Reading a forward's body after its headers passed: streamed from the socket into the
//! request's MAC as it arrives, refused as soon as it is over the cap (or declares to be),
//! and abandoned at a deadline. Nothing here trusts the body; the caller checks the MAC once
//! it is complete.

use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use crate::cluster::forward::FORWARD_BATCH;
use crate::cluster::sign::BodyMac;
use crate::config::Config;
use crate::frames::max_message_frame;

/// Most bytes reserved up front for a body, whatever it declares: memory follows what
/// actually arrives, not what a request claims.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// The limits on a forward's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body accepted, bytes (413 above): the largest batch a peer sends
    /// (`FORWARD_BATCH`, by envelope count and by bytes) of the largest message frame this
    /// cluster builds (from `ingest.max_body_bytes`, which must be the same on every node).
    pub max_bytes: usize,
    /// How long the whole body may take once the headers are in (408 after it):
    /// `cluster.internal_body_timeout_ms`.
    pub deadline: Duration,
}

impl BodyLimits {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            max_bytes: FORWARD_BATCH.max_body(max_message_frame(cfg.ingest.max_body_bytes)),
            deadline: cfg.cluster.internal_body_timeout(),
        }
    }
}

/// Why a body was not read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is over the {0}-byte limit")]
    TooLarge(usize),
    #[error("body did not arrive within {0} ms")]
    TimedOut(u128),
    #[error("body could not be read")]
    Unreadable,
}

/// Reads the body of `req` from `payload` within `limits`, feeding every chunk to `mac`.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
    mac: &mut BodyMac,
) -> Result<web::BytesMut, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(BodyError::TooLarge(limits.max_bytes));
    }
    // n <= max_bytes here, so it fits a usize.
    let capacity = declared.map_or(INITIAL_CAPACITY, |n| (n as usize).min(INITIAL_CAPACITY));
    let reading = stream(payload, limits.max_bytes, capacity, mac);
    tokio::time::timeout(limits.deadline, reading)
        .await
        .map_err(|_| BodyError::TimedOut(limits.deadline.as_millis()))?
}

async fn stream(
    mut payload: web::Payload,
    max_bytes: usize,
    capacity: usize,
    mac: &mut BodyMac,
) -> Result<web::BytesMut, BodyError> {
    let mut body = web::BytesMut::with_capacity(capacity);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > max_bytes {
            return Err(BodyError::TooLarge(max_bytes));
        }
        mac.update(&chunk);
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use actix_web::dev::Payload;
    use actix_web::test::TestRequest;
    use actix_web::FromRequest;

    use super::*;
    use crate::cluster::sign::{sign, Verifier};

    const SECRET: &str = "secret-secret-secret";

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            deadline: Duration::from_millis(100),
        }
    }

    /// A request whose body arrives as `chunks`, then (when `end` is false) never ends.
    async fn request(
        declared: Option<usize>,
        chunks: Vec<&'static [u8]>,
        end: bool,
    ) -> (HttpRequest, web::Payload) {
        let mut t = TestRequest::post();
        if let Some(n) = declared {
            t = t.insert_header((CONTENT_LENGTH, n));
        }
        let (req, _) = t.to_http_parts();
        let items =
            futures_util::stream::iter(chunks.into_iter().map(|c| Ok(web::Bytes::from_static(c))));
        type Chunks = std::pin::Pin<
            Box<
                dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>,
            >,
        >;
        let stream: Chunks = if end {
            Box::pin(items)
        } else {
            Box::pin(items.chain(futures_util::stream::pending()))
        };
        let mut pl = Payload::from(stream);
        let payload = web::Payload::from_request(&req, &mut pl).await.unwrap();
        (req, payload)
    }

    fn mac_for(v: &Verifier, body: &[u8]) -> (crate::cluster::sign::SignedHeaders, BodyMac) {
        let sig = sign(SECRET.as_bytes(), 5000, "n1", body);
        let h = v
            .check_headers(Some("n1"), Some("5000"), Some(&sig), 5000)
            .unwrap();
        let m = v.body_mac(&h);
        (h, m)
    }

    #[actix_rt::test]
    async fn a_body_streamed_in_chunks_is_read_whole_and_its_mac_verifies() {
        let v = Verifier::new(SECRET, 1000);
        let (h, mut mac) = mac_for(&v, b"{\"from\":\"n1\"}");
        let (req, payload) = request(None, vec![b"{\"fr", b"om\":", b"\"n1\"}"], true).await;
        let body = read(&req, payload, limits(100), &mut mac).await.unwrap();
        assert_eq!(&body[..], b"{\"from\":\"n1\"}");
        assert_eq!(v.finish(&h, mac, 5000), Ok(()));
    }

    #[actix_rt::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let v = Verifier::new(SECRET, 1000);
        let (_, mut mac) = mac_for(&v, b"");
        // The stream never yields: the refusal cannot have waited for it.
        let (req, payload) = request(Some(101), vec![], false).await;
        assert_eq!(
            read(&req, payload, limits(100), &mut mac).await,
            Err(BodyError::TooLarge(100))
        );
    }

    #[actix_rt::test]
    async fn a_stream_over_the_cap_is_refused_at_the_chunk_that_crosses_it() {
        let v = Verifier::new(SECRET, 1000);
        let (_, mut mac) = mac_for(&v, b"");
        // Without an end: the refusal comes from the cap, not from the end of the body.
        let (req, payload) = request(None, vec![&[b'x'; 60], &[b'x'; 41]], false).await;
        assert_eq!(
            read(&req, payload, limits(100), &mut mac).await,
            Err(BodyError::TooLarge(100))
        );
        let (req, payload) = request(None, vec![&[b'x'; 60], &[b'x'; 40]], true).await;
        assert_eq!(
            read(&req, payload, limits(100), &mut mac)
                .await
                .unwrap()
                .len(),
            100
        );
    }

    #[actix_rt::test]
    async fn a_body_that_stops_arriving_times_out_at_the_deadline() {
        let v = Verifier::new(SECRET, 1000);
        let (_, mut mac) = mac_for(&v, b"");
        let (req, payload) = request(Some(50), vec![b"{\"from\""], false).await;
        let started = std::time::Instant::now();
        assert_eq!(
            read(&req, payload, limits(100), &mut mac).await,
            Err(BodyError::TimedOut(100))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn default_limits_fit_a_full_batch_of_default_messages_and_nothing_like_64_mib() {
        let limits = BodyLimits::from_config(&Config::default());
        let one = max_message_frame(Config::default().ingest.max_body_bytes);
        assert!(limits.max_bytes > one, "one largest message always fits");
        assert!(limits.max_bytes <= 5 * 1024 * 1024, "{}", limits.max_bytes);
        assert_eq!(limits.deadline, Duration::from_millis(2000));
    }

    #[test]
    fn a_larger_ingest_limit_raises_the_cap_so_the_largest_message_still_fits() {
        let mut cfg = Config::default();
        cfg.ingest.max_body_bytes = 16 * 1024 * 1024;
        let limits = BodyLimits::from_config(&cfg);
        assert!(limits.max_bytes > max_message_frame(cfg.ingest.max_body_bytes));
    }
}
