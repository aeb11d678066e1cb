//! The fake Slack's Socket Mode websocket (tokio-tungstenite on its own loopback port): checks
//! the single-use ticket from `apps.connections.open`, says `hello`, writes each envelope to one
//! connection in turn, records the acks with their latency, and sends `disconnect` or drops
//! connections when the test asks.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::super::http_server::parse_urlencoded;
use super::{Ack, Inner, SocketConn, APP_ID, CLOSE_AFTER_DISCONNECT};

/// What the fake asks one connection's task to do.
pub(super) enum Cmd {
    /// Write envelope attempt `idx` (of `State::envelopes`).
    Deliver { idx: usize, frame: String },
    /// Write a `disconnect`; `close`: then close the socket shortly after.
    Disconnect { frame: String, close: bool },
    /// Drop the socket without a close frame.
    Drop,
}

/// A connection that got `hello`.
pub(super) struct Link {
    id: u64,
    tx: mpsc::UnboundedSender<Cmd>,
    /// It gets no more envelopes (closing `disconnect` sent, or dropped).
    draining: bool,
}

/// The connections envelopes can go to, and the envelopes waiting for one.
#[derive(Default)]
pub(super) struct Links {
    list: Vec<Link>,
    pending: VecDeque<(usize, String)>,
    next: usize,
}

fn links(inner: &Inner) -> MutexGuard<'_, Links> {
    inner.links.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn has_open_link(inner: &Inner) -> bool {
    links(inner).list.iter().any(|l| !l.draining)
}

/// Hands envelope attempt `idx` to the next connection (round-robin), or queues it until one
/// says `hello`.
pub(super) fn deliver(inner: &Inner, idx: usize, frame: String) {
    let mut l = links(inner);
    let n = l.list.len();
    for _ in 0..n {
        let i = l.next % n;
        l.next = l.next.wrapping_add(1);
        if l.list[i].draining {
            continue;
        }
        if l.list[i]
            .tx
            .send(Cmd::Deliver {
                idx,
                frame: frame.clone(),
            })
            .is_ok()
        {
            return;
        }
    }
    l.pending.push_back((idx, frame));
}

fn flush_pending(inner: &Inner) {
    let waiting: Vec<(usize, String)> = links(inner).pending.drain(..).collect();
    for (idx, frame) in waiting {
        deliver(inner, idx, frame);
    }
}

fn mark_draining(inner: &Inner, ids: &[u64]) {
    let mut s = inner.state();
    for c in s.sockets.iter_mut().filter(|c| ids.contains(&c.id)) {
        c.draining = true;
    }
    drop(s);
    inner.changed();
}

pub(super) fn disconnect(inner: &Inner, reason: &str) {
    // Slack keeps using a connection it warned about; after any other reason it closes it.
    let close = reason != "warning";
    let frame = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}).to_string();
    let mut closing = Vec::new();
    for link in links(inner).list.iter_mut().filter(|l| !l.draining) {
        let _ = link.tx.send(Cmd::Disconnect {
            frame: frame.clone(),
            close,
        });
        if close {
            link.draining = true;
            closing.push(link.id);
        }
    }
    mark_draining(inner, &closing);
}

pub(super) fn drop_all(inner: &Inner) {
    let mut dropped = Vec::new();
    for link in links(inner).list.iter_mut() {
        let _ = link.tx.send(Cmd::Drop);
        link.draining = true;
        dropped.push(link.id);
    }
    mark_draining(inner, &dropped);
}

pub(super) async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, inner.clone()));
    }
}

/// The ticket of `/link?ticket=N`, if it was handed out and not used yet (it is used up here).
fn take_ticket(inner: &Inner, req: &WsRequest) -> Result<u64, String> {
    let path = req.uri().path();
    if path != "/link" && path != "/link/" {
        return Err(format!("GET {path} (not the Socket Mode path)"));
    }
    let query = req.uri().query().unwrap_or("");
    let ticket = parse_urlencoded(query)
        .into_iter()
        .find(|(k, _)| k == "ticket")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let mut s = inner.state();
    match ticket {
        Some(t) if s.tickets.remove(&t) => Ok(t),
        _ => Err(format!("GET {path}?{query} (unknown or used ticket)")),
    }
}

async fn connection(stream: TcpStream, inner: Arc<Inner>) {
    let _ = stream.set_nodelay(true);
    let mut ticket = None;
    // The error type is tungstenite's handshake `Callback` signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
        match take_ticket(&inner, req) {
            Ok(t) => {
                ticket = Some(t);
                Ok(resp)
            }
            Err(why) => {
                inner.unexpected(format!("Socket Mode: {why}"));
                let mut reject = ErrorResponse::new(Some("invalid_ticket".to_string()));
                *reject.status_mut() = http::StatusCode::UNAUTHORIZED;
                Err(reject)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, others) = {
        let mut s = inner.state();
        let id = s.sockets.len() as u64;
        let others = s.open_sockets();
        s.sockets.push(SocketConn {
            id,
            hello: false,
            draining: false,
            open: true,
            closed: None,
        });
        (id, others)
    };
    let (mut write, mut read) = ws.split();
    // A held `hello` ([`FakeSlack::hold_hello`]): the connection is open, Slack is slow.
    let _ = inner.hello_gate.subscribe().wait_for(|open| *open).await;
    let hello = json!({
        "type": "hello",
        "num_connections": others + 1,
        "debug_info": {
            "host": "fake-slack",
            "started": "2025-01-01 00:00:00.000",
            "build_number": 1,
            "approximate_connection_time": 3600,
        },
        "connection_info": {"app_id": APP_ID},
    });
    if write.send(Message::Text(hello.to_string())).await.is_ok() {
        // Registered only now, so no envelope can be written before `hello`.
        links(&inner).list.push(Link {
            id,
            tx,
            draining: false,
        });
        if let Some(c) = inner.state().sockets.get_mut(id as usize) {
            c.hello = true;
        }
        inner.changed();
        flush_pending(&inner);
        run(&inner, id, &mut write, &mut read, &mut rx).await;
    }
    // Dropping both halves closes the TCP connection; after `Cmd::Drop` that is all the peer
    // sees (no close frame).
    drop((write, read));
    finish(&inner, id, rx);
}

type WsStream = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn run(
    inner: &Inner,
    id: u64,
    write: &mut futures_util::stream::SplitSink<WsStream, Message>,
    read: &mut futures_util::stream::SplitStream<WsStream>,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
) {
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            msg = read.next() => match msg {
                Some(Ok(Message::Text(text))) => on_text(inner, id, &text),
                Some(Ok(Message::Binary(_))) => inner.unexpected(format!("Socket Mode {id}: a binary frame")),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
            },
            cmd = rx.recv() => match cmd {
                Some(Cmd::Deliver { idx, frame }) => {
                    if write.send(Message::Text(frame.clone())).await.is_err() {
                        links(inner).pending.push_front((idx, frame));
                        return;
                    }
                    if let Some(e) = inner.state().envelopes.get_mut(idx) {
                        e.delivered = Some(Instant::now());
                        e.connection = Some(id);
                    }
                    inner.changed();
                }
                Some(Cmd::Disconnect { frame, close }) => {
                    let _ = write.send(Message::Text(frame)).await;
                    if close {
                        close_at = Some(tokio::time::Instant::now() + CLOSE_AFTER_DISCONNECT);
                    }
                }
                Some(Cmd::Drop) | None => return,
            },
            _ = async { tokio::time::sleep_until(close_at.unwrap_or_else(tokio::time::Instant::now)).await },
                if close_at.is_some() =>
            {
                let frame = CloseFrame { code: CloseCode::Normal, reason: "refresh".into() };
                let _ = write.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

/// An ack (`{"envelope_id": ..., "payload": ...}`), or something Slack would not expect.
fn on_text(inner: &Inner, id: u64, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        inner.unexpected(format!("Socket Mode {id}: not JSON: {text}"));
        return;
    };
    let Some(envelope_id) = v["envelope_id"].as_str() else {
        inner.unexpected(format!("Socket Mode {id}: a message without envelope_id: {text}"));
        return;
    };
    let now = Instant::now();
    let mut s = inner.state();
    let latency = s
        .envelopes
        .iter()
        .filter(|e| e.envelope_id == envelope_id)
        .filter_map(|e| e.delivered)
        .max()
        .map(|d| now.saturating_duration_since(d));
    if latency.is_none() {
        s.unexpected
            .push(format!("Socket Mode {id}: ack of an unknown envelope {envelope_id}"));
    }
    s.acks.push(Ack {
        envelope_id: envelope_id.to_string(),
        payload: v.get("payload").cloned(),
        connection: id,
        at: now,
        latency,
    });
    drop(s);
    inner.changed();
}

/// The connection ended: it takes no more envelopes, and those handed to it but not written
/// go to the next connection.
fn finish(inner: &Inner, id: u64, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    links(inner).list.retain(|l| l.id != id);
    let mut unsent = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        if let Cmd::Deliver { idx, frame } = cmd {
            unsent.push((idx, frame));
        }
    }
    {
        let mut l = links(inner);
        for item in unsent.into_iter().rev() {
            l.pending.push_front(item);
        }
    }
    if let Some(c) = inner.state().sockets.get_mut(id as usize) {
        c.open = false;
        c.closed = Some(Instant::now());
    }
    inner.changed();
    flush_pending(inner);
}
