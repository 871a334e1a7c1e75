//! `GET /demo` and `GET /client/herald.js` over plain HTTP: the page with its CSP, the JS
//! client byte for byte with its ETag (and a 304 for it), and both gone (404) with
//! `server.demo = false`. The page running in a browser is tested in `js_client.rs`.

mod common;

use common::start_node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET with extra header lines; the status, the lower-cased head and the body.
async fn get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut buf))
        .await
        .expect("the node answers")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[actix_rt::test]
async fn the_demo_page_is_served_with_a_strict_csp() {
    let node = start_node(&[]).await;
    let (status, head, body) = get(node.addr, "/demo", "").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&head, "content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none'; script-src 'self' 'unsafe-inline'"));
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(body.contains("import { HeraldClient, VERSION } from \"./client/herald.js\""));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "nothing from elsewhere"
    );
}

#[actix_rt::test]
async fn the_client_script_is_served_as_published_and_revalidated_by_etag() {
    let node = start_node(&[]).await;
    let (status, head, body) = get(node.addr, "/client/herald.js", "").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let published = include_str!("../clients/js/src/herald.js");
    assert_eq!(body, published, "byte for byte");
    let etag = header(&head, "etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");

    let (status, head, body) = get(
        node.addr,
        "/client/herald.js",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(status, 304, "{head}");
    assert_eq!(header(&head, "etag"), Some(etag.as_str()));
    assert_eq!(body, "");
    let other = "If-None-Match: \"0000000000000000\"\r\n";
    assert_eq!(get(node.addr, "/client/herald.js", other).await.0, 200);
}

#[actix_rt::test]
async fn server_demo_false_turns_both_off() {
    let node = start_node(&[("HERALD_SERVER__DEMO", "false")]).await;
    for path in ["/demo", "/client/herald.js"] {
        let (status, head, body) = get(node.addr, path, "").await;
        assert_eq!(status, 404, "{path}: {head}");
        assert!(body.contains("\"not_found\""), "{path}: {body}");
    }
}
