//! A minimal keep-alive HTTP/1.1 client for publishing: one request at a time per
//! connection, `Content-Length` or chunked responses, reconnect after any error.
//!
//! Hand-written instead of `awc` so that thousands of POSTs a second cost one write and
//! one or two reads each on a current-thread tokio runtime, with no per-request allocation
//! beyond the body.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response header block accepted, bytes.
const MAX_HEAD: usize = 64 * 1024;

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection to one server; reconnects lazily.
pub struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
    /// Reusable request buffer.
    req: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Where `needle` first occurs in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parsed response head: status, body framing, and whether the server will close.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

fn parse_head(head: &[u8]) -> std::io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line `{status_line}`")))?;
    let mut h = Head {
        status,
        content_length: None,
        chunked: false,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            h.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(h)
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads the whole response. On error the connection is dropped
    /// (the next request opens a new one); a POST that failed may or may not have been
    /// processed, so it is not retried here.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let result = self.exchange(method, path, bearer, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.req.extend_from_slice(self.addr.to_string().as_bytes());
        if let Some(token) = bearer {
            self.req.extend_from_slice(b"\r\nAuthorization: Bearer ");
            self.req.extend_from_slice(token.as_bytes());
        }
        if !body.is_empty() {
            self.req
                .extend_from_slice(b"\r\nContent-Type: application/json");
        }
        self.req.extend_from_slice(b"\r\nContent-Length: ");
        self.req
            .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        self.req.extend_from_slice(b"\r\n\r\n");
        self.req.extend_from_slice(body);
        // unwrap: set just above when it was None
        let stream = self.stream.as_mut().unwrap();
        stream.write_all(&self.req).await?;

        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("response head too large"));
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = parse_head(&self.buf[..head_end])?;
        self.buf.drain(..head_end + 4);
        let body = if head.chunked {
            read_chunked(stream, &mut self.buf).await?
        } else {
            let n = head.content_length.unwrap_or(0);
            while self.buf.len() < n {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf.drain(..n).collect()
        };
        if head.close {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(4096);
    let n = stream.read_buf(buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    Ok(())
}

/// Reads a chunked body from `buf` (topped up from `stream`) and consumes it.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            read_more(stream, buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        while buf.len() < line_end + 2 + size + 2 {
            read_more(stream, buf).await?;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            // No trailers are expected; the final CRLF was consumed above.
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server that answers each request with the next canned response.
    async fn canned(responses: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            for r in responses {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(r.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn keep_alive_connection_reads_sized_and_chunked_bodies() {
        let addr = canned(vec![
            "HTTP/1.1 202 Accepted\r\ncontent-length: 7\r\n\r\n{\"a\":1}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let mut c = Client::new(addr);
        let r = c.request("POST", "/x", Some("k"), b"{}").await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, &b"{\"a\":1}"[..]));
        let r = c.request("GET", "/y", None, b"").await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        let r = c.request("GET", "/z", None, b"").await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error_and_the_next_request_reconnects() {
        let addr = canned(vec![]).await;
        let mut c = Client::new(addr);
        assert!(c.request("GET", "/", None, b"").await.is_err());
        assert!(c.stream.is_none());
    }
}
