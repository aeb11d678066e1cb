//! The fake's gateway websocket: identify, READY, heartbeats, and the events written to each session.
use super::*;

// Gateway

pub(super) async fn gateway(listener: TcpListener, inner: Arc<Inner>, session: Option<String>, ws_url: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let inner = inner.clone();
        let session = session.clone();
        let ws_url = ws_url.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                connection(ws, inner, session, ws_url).await;
            }
        });
    }
}

/// Where a connection's events come from: the one shared queue (the first session to identify
/// holds it until it closes), or, sharded, a queue of its own that every dispatch feeds.
pub(super) enum Events<'a> {
    Shared(tokio::sync::MutexGuard<'a, mpsc::UnboundedReceiver<Value>>),
    /// The session's own queue, and what takes it off the dispatch list when dropped.
    Own {
        events: mpsc::UnboundedReceiver<Value>,
        _unsubscribe: Unsubscribe,
    },
}

impl Events<'_> {
    pub(super) async fn recv(&mut self) -> Option<Value> {
        match self {
            Events::Shared(rx) => rx.recv().await,
            Events::Own { events, .. } => events.recv().await,
        }
    }
}

/// Removes a sharded session's queue when its connection ends.
pub(super) struct Unsubscribe {
    inner: Arc<Inner>,
    conn: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(c, _)| *c != self.conn);
    }
}

/// Marks the connection closed in [`State::gateway_conns`] when it ends, however it ends.
pub(super) struct ConnClosed {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for ConnClosed {
    fn drop(&mut self) {
        if let Some(c) = self.inner.state().gateway_conns.get_mut(self.index) {
            c.open = false;
        }
        self.inner.changed();
    }
}

pub(super) async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    inner: Arc<Inner>,
    session: Option<String>,
    ws_url: String,
) {
    let index = {
        let mut s = inner.state();
        s.gateway_conns.push(GatewayConn {
            session: session.clone(),
            ready: false,
            open: true,
        });
        s.gateway_conns.len() - 1
    };
    let _closed = ConnClosed {
        inner: inner.clone(),
        index,
    };
    let (mut tx, mut rx) = ws.split();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41_250}, "s": null, "t": null});
    if tx.send(WsMessage::Text(hello.to_string())).await.is_err() {
        return;
    }
    let mut seq: u64 = 0;
    // Wait for IDENTIFY, answering heartbeats meanwhile.
    loop {
        let Some(Ok(msg)) = rx.next().await else { return };
        let WsMessage::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match v["op"].as_u64() {
            Some(1) => {
                inner.state().heartbeats += 1;
                let _ = tx.send(WsMessage::Text(json!({"op": 11}).to_string())).await;
            }
            Some(2) => {
                let intents = v["d"]["intents"].as_u64().unwrap_or(0);
                inner.state().identifies.push(intents);
                break;
            }
            _ => {}
        }
    }
    let mut events = if inner.sharded {
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conn, sub_tx));
        Events::Own {
            events: sub_rx,
            _unsubscribe: Unsubscribe {
                inner: inner.clone(),
                conn,
            },
        }
    } else {
        Events::Shared(inner.dispatch_rx.lock().await)
    };
    seq += 1;
    let mut ready_d = ready_json(&ws_url);
    if let Some(name) = &session {
        ready_d["session_id"] = json!(format!("fake-session-{name}"));
    }
    let ready = json!({"op": 0, "t": "READY", "s": seq, "d": ready_d});
    if tx.send(WsMessage::Text(ready.to_string())).await.is_err() {
        return;
    }
    {
        let mut s = inner.state();
        s.ready_sent += 1;
        if let Some(c) = s.gateway_conns.get_mut(index) {
            c.ready = true;
        }
    }
    inner.changed();
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(Ok(msg)) = msg else { return };
                if let WsMessage::Text(text) = msg {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if v["op"].as_u64() == Some(1) {
                        inner.state().heartbeats += 1;
                        inner.changed();
                        let _ = tx.send(WsMessage::Text(json!({"op": 11}).to_string())).await;
                    }
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                seq += 1;
                let frame = json!({"op": 0, "t": ev["t"], "s": seq, "d": ev["d"]});
                if tx.send(WsMessage::Text(frame.to_string())).await.is_err() {
                    return;
                }
                inner.state().deliveries.push(Delivery {
                    session: session.clone(),
                    id: ev["d"]["id"].as_str().unwrap_or("").to_string(),
                    at: Instant::now(),
                });
                inner.changed();
            }
        }
    }
}
