//! The demo page and the JS client, served by the node itself: `GET /demo`, one page built
//! into the binary (`demo.html`: HTML, CSS and a module script inline; it loads nothing but
//! the client below and talks to nothing but this node's `/ws`), and `GET /client/herald.js`,
//! the official client `clients/js/src/herald.js` byte for byte, with a strong ETag. Both
//! answer `404 not_found` when `server.demo` is off. Neither needs a credential: the page is
//! static, and the token it connects with is the visitor's own (typed in, or passed in the
//! URL fragment `#token=…&device=…`, which browsers never send to the server).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{error_responses, ApiError, ErrorCase};
use super::{ops, AppState};

/// The page, with its script and styles inline.
const PAGE: &str = include_str!("demo.html");

/// The JS client, as published in `clients/js`.
const CLIENT: &str = include_str!("../../clients/js/src/herald.js");

/// The page may run its inline script and the client from this node, and connect (fetch,
/// WebSocket) only to this node; nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
                        base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `"<FNV-1a 64 of CLIENT, 16 hex digits>"`, computed at compile time: a new client build
/// gets a new ETag, an unchanged one is revalidated with a 304.
const CLIENT_ETAG: &str = match std::str::from_utf8(&etag(CLIENT.as_bytes())) {
    Ok(tag) => tag,
    Err(_) => panic!("an ETag is ASCII"),
};

/// A quoted 64-bit FNV-1a hash of `bytes` in hex (an HTTP entity tag).
const fn etag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        out[1 + d] = HEX[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    out
}

/// What both routes answer with `server.demo = false`.
const DEMO_OFF: &[ErrorCase] = &[ErrorCase::new(
    StatusCode::NOT_FOUND,
    "not_found",
    "`server.demo = false`: the demo page and the client are not served",
)];

error_responses!(
    /// The refusal of `/demo` and `/client/herald.js`.
    DemoErrors: DEMO_OFF
);

/// The demo page
///
/// A self-contained page that connects to this node's `/ws` with the JS client and a token
/// typed in or given in the fragment (`/demo#token=<token>&device=<id>`), and lists the
/// messages as they arrive.
#[utoipa::path(
    get,
    path = "/demo",
    operation_id = "demo_page",
    tag = "demo",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        DemoErrors,
    )
)]
pub async fn page(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.demo {
        return ops::not_found().await;
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PAGE))
}

/// The JS client
///
/// `@herald/client` as an ES module (`clients/js/src/herald.js`), with an `ETag`; `304`
/// when `If-None-Match` names it.
#[utoipa::path(
    get,
    path = "/client/herald.js",
    operation_id = "demo_client",
    tag = "demo",
    params(("If-None-Match" = Option<String>, Header, description = "A previously received ETag")),
    responses(
        (status = 200, description = "The module", body = String, content_type = "text/javascript"),
        (status = 304, description = "Unchanged since the ETag given"),
        DemoErrors,
    )
)]
pub async fn client(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.demo {
        return ops::not_found().await;
    }
    let fresh = matches_etag(&req);
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // no-cache: browsers keep it, and ask again (cheaply, with If-None-Match) before using it,
    // so a node upgrade never leaves an old client in a page.
    resp.insert_header((header::ETAG, CLIENT_ETAG))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(resp.finish());
    }
    Ok(resp
        .content_type("text/javascript; charset=utf-8")
        .body(CLIENT))
}

/// Whether the request's `If-None-Match` lists the client's ETag (or `*`); weak tags match
/// too (RFC 9110 13.1.2: weak comparison).
fn matches_etag(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == CLIENT_ETAG || t == "*")
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_etag_is_a_quoted_hex_hash_of_the_client() {
        assert_eq!(CLIENT_ETAG.len(), 18);
        assert!(CLIENT_ETAG.starts_with('"') && CLIENT_ETAG.ends_with('"'));
        assert!(CLIENT_ETAG[1..17].bytes().all(|b| b.is_ascii_hexdigit()));
        // FNV-1a 64 test vectors: "" and "a".
        assert_eq!(&etag(b""), b"\"cbf29ce484222325\"");
        assert_eq!(&etag(b"a"), b"\"af63dc4c8601ec8c\"");
    }

    #[test]
    fn if_none_match_matches_the_etag_in_a_list_weak_or_star() {
        let with = |v: &str| {
            TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, v))
                .to_http_request()
        };
        assert!(matches_etag(&with(CLIENT_ETAG)));
        assert!(matches_etag(&with(&format!("\"x\", W/{CLIENT_ETAG}"))));
        assert!(matches_etag(&with("*")));
        assert!(!matches_etag(&with("\"0000000000000000\"")));
        assert!(!matches_etag(&TestRequest::default().to_http_request()));
    }
}
