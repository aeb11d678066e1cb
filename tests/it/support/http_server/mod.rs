//! A tiny HTTP/1.1 server for test fakes (fake AWS, fake Discord REST), built on tokio only.
//!
//! It supports keep-alive connections, `Content-Length` and `chunked` request bodies,
//! `Expect: 100-continue`, and honours `Connection: close`. Every request goes to one
//! synchronous handler `Fn(Request) -> Response`; [`Router`] is a small method + path-pattern
//! dispatcher that can serve as that handler. Malformed requests are answered with 400, and a
//! handler that panics is answered with 500 (and the panic is printed), so a broken request
//! can never silently kill the server.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request line / header block / body the server accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One parsed HTTP request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string, still percent-encoded, e.g. `/api/v10/gateway`.
    pub path: String,
    /// The raw query string without `?` (empty if none).
    pub query: String,
    /// Header names are lower-cased; order is preserved.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
    /// Captures of `{name}` segments when dispatched by a [`Router`].
    pub path_params: BTreeMap<String, String>,
}

impl Request {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The decoded query string pairs.
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_urlencoded(&self.query)
    }

    /// The body decoded as `application/x-www-form-urlencoded` pairs.
    pub fn form_params(&self) -> Vec<(String, String)> {
        parse_urlencoded(&String::from_utf8_lossy(&self.body))
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A captured `{name}` path segment.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.path_params.get(name).map(String::as_str)
    }
}

/// One HTTP response. `Content-Length` and `Connection` are added by the server.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// A `text/xml` response.
    pub fn xml(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("content-type", "text/xml")
            .with_body(body.into().into_bytes())
    }

    /// An `application/json` response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status)
            .with_header("content-type", "application/json")
            .with_body(value.to_string().into_bytes())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A running server; the accept loop stops when [`HttpServer::shutdown`] is called or the
/// runtime ends. Open connections end with the runtime (or when the client closes them).
pub struct HttpServer {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `127.0.0.1:0` and serves every request with `handler`.
    pub async fn start<F>(handler: F) -> io::Result<HttpServer>
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handler: Handler = Arc::new(handler);
        let accept_task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            // I/O errors end only this connection.
                            let _ = serve_connection(stream, handler).await;
                        });
                    }
                    Err(e) => {
                        eprintln!("http_server: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(HttpServer { addr, accept_task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.accept_task.abort();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Why a request could not be read.
enum ReadError {
    /// The client closed the connection cleanly between requests.
    Closed,
    /// The connection failed.
    Io,
    /// The request is malformed: answer 400 and close.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Io
    }
}

async fn serve_connection(stream: TcpStream, handler: Handler) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let (request, keep_alive) = match read_request(&mut reader).await {
            Ok(r) => r,
            Err(ReadError::Closed) | Err(ReadError::Io) => return Ok(()),
            Err(ReadError::Bad(why)) => {
                let response = Response::text(400, format!("bad request: {why}\n"));
                write_response(reader.get_mut(), &response, false, false).await?;
                return Ok(());
            }
        };
        let head_only = request.method == "HEAD";
        let h = handler.clone();
        let response = match catch_unwind(AssertUnwindSafe(move || h(request))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string());
                eprintln!("http_server: handler panicked: {msg}");
                Response::text(500, format!("handler panicked: {msg}\n"))
            }
        };
        write_response(reader.get_mut(), &response, keep_alive, head_only).await?;
        if !keep_alive {
            let _ = reader.get_mut().shutdown().await;
            return Ok(());
        }
    }
}

async fn read_line(reader: &mut BufReader<TcpStream>, budget: &mut usize) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if n > *budget {
        return Err(ReadError::Bad("header section too large".into()));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Io);
    }
    while matches!(line.last(), Some(b'\n') | Some(b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ReadError::Bad("header is not UTF-8".into()))
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Result<(Request, bool), ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    // Tolerate stray empty lines between requests (RFC 9112 2.2).
    let mut request_line = read_line(reader, &mut budget).await?;
    while request_line.is_empty() {
        request_line = read_line(reader, &mut budget).await?;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m, t, v),
        _ => return Err(ReadError::Bad(format!("bad request line {request_line:?}"))),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let line = match read_line(reader, &mut budget).await {
            Ok(l) => l,
            Err(ReadError::Closed) => return Err(ReadError::Io),
            Err(e) => return Err(e),
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("bad header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
        path_params: BTreeMap::new(),
    };
    let connection = request.header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader).await?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY_BYTES {
            return Err(ReadError::Bad("body too large".into()));
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok((request, keep_alive))
}

async fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let line = read_line(reader, &mut budget).await.map_err(closed_is_io)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let trailer = read_line(reader, &mut budget).await.map_err(closed_is_io)?;
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Bad("body too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let end = read_line(reader, &mut budget).await.map_err(closed_is_io)?;
        if !end.is_empty() {
            return Err(ReadError::Bad("chunk not followed by CRLF".into()));
        }
    }
}

fn closed_is_io(e: ReadError) -> ReadError {
    match e {
        ReadError::Closed => ReadError::Io,
        other => other,
    }
}

async fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "content-length" || lower == "connection" || lower == "transfer-encoding" {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n", response.body.len()));
    head.push_str(if keep_alive {
        "connection: keep-alive\r\n\r\n"
    } else {
        "connection: close\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    stream.write_all(&bytes).await?;
    stream.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Decodes `%XX` escapes and `+` (as space). Invalid escapes are kept literally.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=two%20words` into decoded pairs (empty segments skipped).
pub fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(kv), String::new()),
        })
        .collect()
}

type RouteHandler = Box<dyn Fn(Request) -> Response + Send + Sync>;

/// Dispatches on method and path pattern. Patterns are `/`-separated; a `{name}` segment
/// captures one segment into [`Request::path_params`], and a final `{*name}` captures the rest.
/// Routes are tried in the order added; unmatched requests go to the fallback (404 by default).
#[derive(Default)]
pub struct Router {
    routes: Vec<(String, Vec<String>, RouteHandler)>,
    fallback: Option<RouteHandler>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route; `method` `"*"` matches any method.
    pub fn route<F>(mut self, method: &str, pattern: &str, handler: F) -> Router
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let segments = split_path(pattern).map(str::to_string).collect();
        self.routes
            .push((method.to_ascii_uppercase(), segments, Box::new(handler)));
        self
    }

    /// Sets the handler for requests no route matches.
    pub fn fallback<F>(mut self, handler: F) -> Router
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        self.fallback = Some(Box::new(handler));
        self
    }

    /// Serves one request.
    pub fn handle(&self, mut request: Request) -> Response {
        let path: Vec<&str> = split_path(&request.path).collect();
        for (method, pattern, handler) in &self.routes {
            if method != "*" && *method != request.method {
                continue;
            }
            if let Some(params) = match_path(pattern, &path) {
                request.path_params = params;
                return handler(request);
            }
        }
        match &self.fallback {
            Some(f) => f(request),
            None => Response::text(404, format!("no route for {} {}\n", request.method, request.path)),
        }
    }

    /// Starts an [`HttpServer`] serving this router.
    pub async fn serve(self) -> io::Result<HttpServer> {
        HttpServer::start(move |req| self.handle(req)).await
    }
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn match_path(pattern: &[String], path: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for (i, seg) in pattern.iter().enumerate() {
        if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
            params.insert(name.to_string(), path.get(i..)?.join("/"));
            return Some(params);
        }
        let actual = path.get(i)?;
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            params.insert(name.to_string(), url_decode(actual));
        } else if seg != actual {
            return None;
        }
    }
    (pattern.len() == path.len()).then_some(params)
}

#[cfg(test)]
mod tests;
