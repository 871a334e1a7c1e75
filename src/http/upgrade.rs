//! WebSocket upgrades, taken from the HTTP/1 dispatcher: actix-http hands every request
//! that asks for an upgrade to [`service`] together with its connection (socket and unread
//! bytes), so a session owns its socket and keeps no HTTP buffers. (Answering the upgrade
//! with a streaming response instead, as `actix-ws` does, keeps the dispatcher's two 8 KB
//! buffers and a 32-slot channel alive for as long as the session lives.)
//!
//! The checks and refusals are those of `GET /ws` ([`super::ws::admit`]); a refusal is
//! written as a plain HTTP/1.1 response with Herald's JSON error body, and the connection
//! closes after it. Any other upgrade request gets the 404 of an unknown route.

use actix_codec::Framed;
use actix_http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_KEY};
use actix_http::{h1, Method, Request};
use actix_rt::net::TcpStream;
use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::{web, ResponseError};
use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use super::{ws, AppState};
use crate::actors::session::WsSession;

/// The path sessions connect to.
pub const WS_PATH: &str = "/ws";

/// Serves one upgrade request: a session on success, else the refusal.
pub async fn service(
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
    state: web::Data<AppState>,
) -> Result<(), actix_web::Error> {
    let parts = framed.into_parts();
    let mut io = parts.io;
    let admitted = if req.path() == WS_PATH && req.method() == Method::GET {
        ws::admit(req.head(), &state).await
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ))
    };
    match admitted {
        Ok(opening) => {
            let key = req
                .head()
                .headers
                .get(SEC_WEBSOCKET_KEY)
                .map_or(&b""[..], HeaderValue::as_bytes);
            // The session writes the answer, with its welcome.
            let answer = switching_protocols(key);
            // Bytes the client sent after its request (its first frames) stay first in
            // line; the dispatcher's 8 KB read buffer is not kept.
            let early = BytesMut::from(&parts.read_buf[..]);
            drop(parts.read_buf);
            // The session runs on its user's hub shard thread: the socket moves there (every
            // shard has its thread before the node accepts; else the session stays here).
            let socket = io.into_std()?;
            let deps = state.session.clone();
            let home = state.hub.home(&opening.user).cloned();
            let start = async move {
                match TcpStream::from_std(socket) {
                    Ok(io) => WsSession::start(opening, deps, io, &answer, early),
                    Err(e) => tracing::warn!(error = %e, "could not adopt an upgraded socket"),
                }
            };
            match home {
                Some(home) => {
                    if !home.spawn(start) {
                        tracing::error!("the hub shard's thread has stopped; socket dropped");
                    }
                }
                None => drop(actix_rt::spawn(start)),
            }
        }
        Err(refusal) => {
            io.write_all(&refusal_bytes(&refusal)).await?;
            io.shutdown().await?;
        }
    }
    Ok(())
}

/// The `101 Switching Protocols` answer to a handshake with `key` (RFC 6455 4.2.2).
pub fn switching_protocols(key: &[u8]) -> Vec<u8> {
    let accept = actix_http::ws::hash_key(key);
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
          connection: upgrade\r\nsec-websocket-accept: ",
    );
    out.extend_from_slice(&accept);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// `err` as a whole HTTP/1.1 response (status, its headers, the JSON body), closing the
/// connection.
pub fn refusal_bytes(err: &ApiError) -> BytesMut {
    let resp = err.error_response();
    let status = resp.status();
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in resp.headers() {
        if name == CONNECTION || name == CONTENT_LENGTH {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    // An error body is always a complete JSON document in memory.
    let body = resp.into_body().try_into_bytes().unwrap_or_default();
    out.put_slice(b"content-length: ");
    out.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.put_slice(b"\r\nconnection: close\r\n\r\n");
    out.put_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_answer_carries_the_rfc_6455_accept_key() {
        // The example of RFC 6455 section 1.3.
        let out = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_refusal_is_a_complete_response_with_its_json_body_and_retry_after() {
        let err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "connect_rate_limited",
            "slow down",
        )
        .retry_after(3);
        let out = refusal_bytes(&err);
        let text = std::str::from_utf8(&out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains("retry-after: 3"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "connect_rate_limited");
    }
}
