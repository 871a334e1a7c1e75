//! `GET /api/v1/messages/{id}/status`: where one message stands with each of its
//! recipients, computed from what the store already keeps (the message's per-user copies
//! and the devices' ack cursors), so delivery itself writes nothing extra for it.
//!
//! The handler is glue (key, id, two store reads); [`assemble`] decides the answer's shape
//! and order as a plain function.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::api::{check_api_key, API_KEY_ERRORS};
use super::error::{error_responses, ApiError, ErrorCase, STORE_ERRORS};
use super::AppState;
use crate::ids::{DeviceId, MessageId, Seq, UserId};
use crate::store::{DeviceCursor, MessageCopy};

/// What the handler itself refuses.
const ID_ERRORS: &[ErrorCase] = &[
    ErrorCase::new(
        StatusCode::BAD_REQUEST,
        "invalid_id",
        "`{id}` is not a message id (a UUID as `POST /api/v1/messages` returns it)",
    ),
    ErrorCase::new(
        StatusCode::NOT_FOUND,
        "message_not_found",
        "no stored copy of the message is known: an unknown id, a broadcast, or every copy gone",
    ),
];

error_responses!(
    /// The errors of `GET /api/v1/messages/{id}/status`.
    StatusErrors: API_KEY_ERRORS, ID_ERRORS, STORE_ERRORS
);

/// The answer: the message and where it stands with each recipient, sorted by user.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct MessageStatus {
    #[schema(value_type = MessageId)]
    pub id: String,
    pub recipients: Vec<RecipientStatus>,
}

/// One recipient user's copy and that user's devices, sorted by device.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct RecipientStatus {
    pub user: UserId,
    /// The message's seq for this user.
    #[schema(value_type = u64)]
    pub seq: Seq,
    /// Whether the copy is still retained and unexpired (a device resuming below `seq`
    /// would receive it).
    pub stored: bool,
    /// Every device of the user with a stored ack cursor; empty when none ever acked.
    pub devices: Vec<DeviceStatus>,
}

/// One device's ack cursor measured against the message.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct DeviceStatus {
    pub device: DeviceId,
    /// Everything up to here is handled on the device.
    #[schema(value_type = u64)]
    pub acked_seq: Seq,
    /// The cursor has reached the message's seq: the device handled it.
    pub acked: bool,
}

/// Joins the copies of message `id` with the cursors of their users' devices; cursors of
/// other users are ignored. Recipients are sorted by user, devices by device.
pub fn assemble(
    id: &MessageId,
    copies: Vec<MessageCopy>,
    cursors: Vec<DeviceCursor>,
) -> MessageStatus {
    let mut by_user: HashMap<UserId, Vec<(DeviceId, Seq)>> = HashMap::new();
    for c in cursors {
        by_user
            .entry(c.user)
            .or_default()
            .push((c.device, c.acked_seq));
    }
    let mut recipients: Vec<RecipientStatus> = copies
        .into_iter()
        .map(|copy| {
            let mut devices: Vec<DeviceStatus> = by_user
                .get(&copy.user)
                .into_iter()
                .flatten()
                .map(|(device, acked_seq)| DeviceStatus {
                    device: device.clone(),
                    acked_seq: *acked_seq,
                    acked: *acked_seq >= copy.seq,
                })
                .collect();
            devices.sort_by(|a, b| a.device.cmp(&b.device));
            RecipientStatus {
                user: copy.user,
                seq: copy.seq,
                stored: copy.stored,
                devices,
            }
        })
        .collect();
    recipients.sort_by(|a, b| a.user.cmp(&b.user));
    MessageStatus {
        id: id.to_string(),
        recipients,
    }
}

/// A message's delivery status
///
/// Where one message stands with each of its recipients: its `seq` for each user, whether
/// that copy is still stored, and whether each device's ack cursor has reached it. Acks
/// show here within `store.cursor_flush_ms` of reaching the node.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}/status",
    tag = "messages",
    security(("api_key" = [])),
    params(("id" = MessageId, Path, description = "The `id` a 202 answered")),
    responses(
        (status = 200, description = "The message's status", body = MessageStatus),
        StatusErrors,
    )
)]
pub async fn message_status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_api_key(&req, &state)?;
    let id = MessageId::parse(&path)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("id: {e}")))?;
    let store = &state.backends.store;
    let copies = store.locate(&id).await?;
    if copies.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "message_not_found",
            "no stored copy of this message: unknown id, a broadcast, or every copy gone",
        ));
    }
    let users: Vec<UserId> = copies.iter().map(|c| c.user.clone()).collect();
    let cursors = store.device_cursors(&users).await?;
    Ok(HttpResponse::Ok().json(assemble(&id, copies, cursors)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id() -> MessageId {
        MessageId::parse("0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c").unwrap()
    }

    fn copy(user: &str, seq: Seq, stored: bool) -> MessageCopy {
        MessageCopy {
            user: UserId::parse(user).unwrap(),
            seq,
            stored,
        }
    }

    fn cursor(user: &str, device: &str, acked_seq: Seq) -> DeviceCursor {
        DeviceCursor {
            user: UserId::parse(user).unwrap(),
            device: DeviceId::parse(device).unwrap(),
            acked_seq,
        }
    }

    #[test]
    fn recipients_are_sorted_by_user_and_devices_by_device_with_acked_from_the_cursor() {
        let copies = vec![copy("bob", 1, true), copy("alice", 7, true)];
        let cursors = vec![
            cursor("alice", "tablet", 6),
            cursor("alice", "phone", 7),
            cursor("alice", "laptop", 9),
        ];
        let status = assemble(&id(), copies, cursors);
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"id": "0192f4c8-7d1e-7a53-9c2b-6f1d2e3a4b5c", "recipients": [
                {"user": "alice", "seq": 7, "stored": true, "devices": [
                    {"device": "laptop", "acked_seq": 9, "acked": true},
                    {"device": "phone", "acked_seq": 7, "acked": true},
                    {"device": "tablet", "acked_seq": 6, "acked": false},
                ]},
                {"user": "bob", "seq": 1, "stored": true, "devices": []},
            ]})
        );
    }

    #[test]
    fn each_recipient_is_measured_against_its_own_seq_and_other_users_cursors_are_ignored() {
        let copies = vec![copy("a", 3, false), copy("b", 10, true)];
        let cursors = vec![
            cursor("b", "d", 5),
            cursor("a", "d", 5),
            cursor("c", "d", 99),
        ];
        let status = assemble(&id(), copies, cursors);
        let acked: Vec<(&str, bool, bool)> = status
            .recipients
            .iter()
            .map(|r| (r.user.as_str(), r.stored, r.devices[0].acked))
            .collect();
        assert_eq!(acked, [("a", false, true), ("b", true, false)]);
    }
}
