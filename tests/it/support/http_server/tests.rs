//! The server's own tests: requests read from raw bytes, responses written, paths routed.
use super::*;
use tokio::io::AsyncReadExt;

async fn roundtrip(server: &HttpServer, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn keep_alive_chunked_and_close() {
    let server = HttpServer::start(|req| {
        Response::text(
            200,
            format!("{} {} q={} body={}", req.method, req.path, req.query, req.body_text()),
        )
    })
    .await
    .expect("start");
    let raw = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
    let out = roundtrip(&server, raw).await;
    assert!(out.contains("POST /a q=x=1 body=hello"), "{out}");
    assert!(out.contains("POST /b q= body=abcde"), "{out}");
    assert!(out.contains("GET /c q= body="), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3);
    assert!(out.contains("connection: close"));
}

#[tokio::test]
async fn bad_requests_and_panics() {
    let server = HttpServer::start(|req| {
        if req.path == "/panic" {
            panic!("boom");
        }
        Response::new(204)
    })
    .await
    .expect("start");
    let out = roundtrip(&server, b"GARBAGE\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = roundtrip(&server, b"POST / HTTP/1.1\r\nContent-Length: zz\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = roundtrip(&server, b"GET /panic HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");
    // The server still works after a panic.
    let out = roundtrip(&server, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
}

#[tokio::test]
async fn router_captures() {
    let server = Router::new()
        .route("GET", "/api/v10/channels/{id}/messages", |req| {
            Response::text(200, format!("chan={}", req.param("id").unwrap_or("")))
        })
        .route("*", "/files/{*rest}", |req| {
            Response::text(200, format!("rest={}", req.param("rest").unwrap_or("")))
        })
        .serve()
        .await
        .expect("start");
    let out = roundtrip(
        &server,
        b"GET /api/v10/channels/42/messages HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.ends_with("chan=42"), "{out}");
    let out = roundtrip(&server, b"PUT /files/a/b/c HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(out.ends_with("rest=a/b/c"), "{out}");
    let out = roundtrip(&server, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert_eq!(url_decode("a%20b+c%2"), "a b c%2");
}
