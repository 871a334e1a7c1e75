//! What a session does with the client's frames: JSON pings (with an optional token
//! refresh) and acks, and the replies to frames it does not take (binary, fragmented,
//! unknown or malformed), protocol errors and oversized frames.

use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::{Message, ProtocolError};
use tracing::debug;

use super::WsSession;
use crate::auth::{AuthError, AuthRequest, Identity, Purpose};
use crate::frames::{self, ClientFrame, CloseReason, FrameError};

impl WsSession {
    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match ClientFrame::parse(text) {
            Ok(ClientFrame::Ping { token }) => {
                if let Some(token) = token {
                    self.refresh(token, ctx);
                }
                self.out().push_json_pong();
            }
            Ok(ClientFrame::Ack { seq }) => {
                if let Some(seq) = self.order.as_mut().and_then(|o| o.on_ack(seq)) {
                    self.deps
                        .cursors
                        .ack(self.user.clone(), self.device.clone(), seq);
                }
            }
            Err(FrameError::UnknownType(t)) => self.text(frames::error(
                "unknown_frame",
                &format!(
                    "unknown frame type `{}`; expected ping or ack",
                    t.chars().take(64).collect::<String>()
                ),
            )),
            Err(FrameError::Malformed(e)) => self.text(frames::error(
                "bad_frame",
                &format!("frame is not a valid ping or ack: {e}"),
            )),
        }
    }

    /// A ping carried a token: judge it the way connects are judged (off the session's
    /// path: an auth endpoint call does not hold up deliveries), then extend the session
    /// when it is for this user and device.
    fn refresh(&mut self, token: String, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let device = self.device.to_string();
        let verify = async move {
            deps.auth
                .verify(AuthRequest {
                    token: &token,
                    device: Some(&device),
                    remote_addr: None,
                    since: None,
                    purpose: Purpose::Refresh,
                })
                .await
        };
        ctx.spawn(
            verify
                .into_actor(self)
                .map(|verdict, act, _| act.refreshed(verdict)),
        );
    }

    fn refreshed(&mut self, verdict: Result<Identity, AuthError>) {
        if self.out().is_closing() {
            return;
        }
        let refused = match verdict {
            Ok(id) if id.device.as_ref().is_some_and(|d| *d != self.device) => Some((
                "token_device_mismatch",
                "refresh token is bound to another device; session expiry unchanged".into(),
            )),
            Ok(id) if id.user == self.user => {
                self.expires_at = self.expires_at.max(id.expires_at);
                None
            }
            Ok(_) => Some((
                "token_user_mismatch",
                "refresh token is for another user; session expiry unchanged".into(),
            )),
            Err(e) => Some((e.code(), format!("{e}; session expiry unchanged"))),
        };
        if let Some((code, message)) = refused {
            self.text(frames::error(code, &message));
        }
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if self.out().is_closing() {
            return;
        }
        match item {
            Ok(Message::Text(text)) => self.on_text(&text, ctx),
            Ok(Message::Binary(_)) => self.text(frames::error(
                "binary_not_supported",
                "send JSON text frames",
            )),
            Ok(Message::Ping(bytes)) => self.out().push_pong(bytes),
            Ok(Message::Pong(_)) | Ok(Message::Nop) => {}
            Ok(Message::Close(_)) => self.close(CloseReason::Normal, ctx),
            Ok(Message::Continuation(_)) => self.text(frames::error(
                "fragmented_not_supported",
                "send each frame unfragmented",
            )),
            Err(ProtocolError::Overflow) => self.close(CloseReason::FrameTooBig, ctx),
            Err(err) => {
                debug!(session = %self.id, error = %err, "websocket protocol error");
                self.close(CloseReason::ProtocolError, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client went away (TCP closed); nothing more can be written.
        ctx.stop();
    }
}
