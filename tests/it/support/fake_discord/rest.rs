//! The fake's REST API: routes, payloads (JSON or multipart), rate limits and the 429s they answer.
use super::*;

// REST

pub(super) fn json_error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"message": message, "code": 0}))
}

/// Splits a multipart body into (name, filename, bytes).
pub(super) fn multipart_parts(req: &Request) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(ct) = req.header("content-type") else {
        return Vec::new();
    };
    let Some(boundary) = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")) else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let body = &req.body;
    let mut starts = Vec::new();
    let d = delimiter.as_bytes();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let chunk = &body[w[0] + d.len()..w[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = chunk.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&chunk[..split]).to_string();
        let data = chunk[split + 4..].to_vec();
        let field = |key: &str| {
            let pat = format!("{key}=\"");
            head.find(&pat).map(|s| {
                let rest = &head[s + pat.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_string()
            })
        };
        let Some(name) = field(" name").or_else(|| field(";name")) else {
            continue;
        };
        parts.push((name, field("filename"), data));
    }
    parts
}

/// The JSON payload and the uploaded files (name, size) of a JSON or multipart request.
pub(super) fn payload(req: &Request) -> (Value, Vec<(String, usize)>) {
    let is_multipart = req.header("content-type").is_some_and(|c| c.starts_with("multipart/"));
    if !is_multipart {
        return (serde_json::from_slice(&req.body).unwrap_or(Value::Null), Vec::new());
    }
    let mut json_body = Value::Null;
    let mut files = Vec::new();
    for (name, filename, data) in multipart_parts(req) {
        if name == "payload_json" {
            json_body = serde_json::from_slice(&data).unwrap_or(Value::Null);
        } else if let Some(f) = filename {
            files.push((f, data.len()));
        }
    }
    (json_body, files)
}

impl Inner {
    /// Records the request and applies the global limit; `Some` is the 429 to answer. As on
    /// Discord, the interaction endpoints (callbacks, and the webhooks that edit and follow up
    /// an interaction's answer) are not counted against the global limit.
    pub(super) fn admit(&self, req: &Request, channel: Option<&str>) -> Option<Response> {
        let now = Instant::now();
        let mut s = self.state();
        s.requests.push((req.method.clone(), req.path.clone(), now));
        let interaction = req.path.contains("/interactions/") || req.path.contains("/webhooks/");
        let request = format!("{} {}", req.method, req.path);
        if let Decision::Refuse {
            retry_after,
            global,
            headers,
        } = s.limits.decide(&request, interaction, now)
        {
            s.record_429(req, now, retry_after, global);
            drop(s);
            self.changed();
            let refusal = too_many(retry_after, global);
            return Some(headers.iter().fold(refusal, |r, (n, v)| r.with_header(n, v)));
        }
        if interaction {
            return None;
        }
        let second = Duration::from_secs(1);
        while s.global_log.front().is_some_and(|t| now.duration_since(*t) >= second) {
            s.global_log.pop_front();
        }
        if s.global_log.len() >= self.limits.global_per_second as usize {
            let retry = second.saturating_sub(now.duration_since(s.global_log[0]));
            s.record_429(req, now, retry, true);
            drop(s);
            self.changed();
            return Some(too_many(retry, true));
        }
        if let Some(channel) = channel {
            let window = self.limits.window;
            let log = s.channel_log.entry(channel.to_string()).or_default();
            while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
                log.pop_front();
            }
            if log.len() >= self.limits.per_channel as usize {
                let retry = window.saturating_sub(now.duration_since(log[0]));
                s.record_429(req, now, retry, false);
                drop(s);
                self.changed();
                return Some(too_many(retry, false));
            }
            log.push_back(now);
        }
        s.global_log.push_back(now);
        None
    }

    /// A served answer with the headers of the bucket its request belongs to, if announced.
    pub(super) fn announced(&self, req: &Request, answer: Response) -> Response {
        if answer.status == 429 {
            return answer;
        }
        let headers = self
            .state()
            .limits
            .headers(&format!("{} {}", req.method, req.path), Instant::now());
        headers.iter().fold(answer, |r, (n, v)| r.with_header(n, v))
    }

    pub(super) fn authorized(&self, req: &Request) -> Option<Response> {
        if req.header("authorization") == Some(&format!("Bot {TOKEN}")) {
            return None;
        }
        self.state()
            .unexpected
            .push(format!("{} {} (bad token)", req.method, req.path));
        self.changed();
        Some(json_error(401, "401: Unauthorized"))
    }

    pub(super) fn create_message(&self, req: &Request) -> Response {
        let channel = req.param("channel").unwrap_or("").to_string();
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, Some(&channel))) {
            return r;
        }
        if let Some(refused) = self.dm_refused(&channel) {
            return refused;
        }
        let (body, files) = payload(req);
        let content = body["content"].as_str().unwrap_or("").to_string();
        let components = body["components"].as_array().cloned().unwrap_or_default();
        let mut s = self.state();
        let id = s.new_id();
        let attachments: Vec<Value> = files
            .iter()
            .map(|(n, size)| attachment_json(&format!("{id}{}", n.len()), n, *size))
            .collect();
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        s.messages.insert(
            id.clone(),
            StoredMessage {
                id: id.clone(),
                channel: channel.clone(),
                content: content.clone(),
                attachments: names.clone(),
                components: components.clone(),
                edits: 0,
            },
        );
        s.sent.push(Sent {
            kind: SentKind::Create,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: None,
            components: Some(components.clone()),
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        // Discord echoes the bot's own messages to it through the gateway.
        let mut echo = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, false, true);
        echo["components"] = Value::Array(components.clone());
        self.dispatch("MESSAGE_CREATE", echo);
        self.changed();
        let mut answer = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, false, false);
        answer["components"] = Value::Array(components);
        Response::json(200, &answer)
    }

    pub(super) fn edit_message(&self, req: &Request) -> Response {
        let channel = req.param("channel").unwrap_or("").to_string();
        let id = req.param("message").unwrap_or("").to_string();
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, Some(&channel))) {
            return r;
        }
        let (body, files) = payload(req);
        let mut s = self.state();
        let Some(stored) = s.messages.get_mut(&id).filter(|m| m.channel == channel) else {
            drop(s);
            return json_error(404, "Unknown Message");
        };
        if let Some(c) = body["content"].as_str() {
            stored.content = c.to_string();
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        if !names.is_empty() {
            stored.attachments = names.clone();
        }
        let components = body["components"].as_array().cloned();
        if let Some(c) = &components {
            stored.components = c.clone();
        }
        stored.edits += 1;
        let content = stored.content.clone();
        let rows = stored.components.clone();
        let attachments: Vec<Value> = stored.attachments.iter().map(|n| attachment_json(&id, n, 1)).collect();
        s.sent.push(Sent {
            kind: SentKind::Edit,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: None,
            components,
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        self.changed();
        let mut answer = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, true, false);
        answer["components"] = Value::Array(rows);
        Response::json(200, &answer)
    }

    pub(super) fn get_message(&self, req: &Request) -> Response {
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, None)) {
            return r;
        }
        let s = self.state();
        match s.messages.get(req.param("message").unwrap_or("")) {
            Some(m) => Response::json(200, &stored_message_json(m, false)),
            None => json_error(404, "Unknown Message"),
        }
    }

    pub(super) fn commands(&self, req: &Request) -> Response {
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, None)) {
            return r;
        }
        let guild = req.param("guild").map(str::to_string);
        let (body, _) = payload(req);
        let mut s = self.state();
        let list: Vec<Value> = match req.method.as_str() {
            "PUT" => {
                s.commands.retain(|(g, _)| *g != guild);
                let cmds = body.as_array().cloned().unwrap_or_default();
                for c in &cmds {
                    s.commands.push((guild.clone(), c.clone()));
                }
                cmds
            }
            "POST" => {
                s.commands.push((guild.clone(), body.clone()));
                drop(s);
                self.changed();
                return Response::json(201, &command_json(&body, guild.as_deref()));
            }
            _ => s
                .commands
                .iter()
                .filter(|(g, _)| *g == guild)
                .map(|(_, c)| c.clone())
                .collect(),
        };
        drop(s);
        self.changed();
        let out: Vec<Value> = list.iter().map(|c| command_json(c, guild.as_deref())).collect();
        Response::json(200, &Value::Array(out))
    }

    pub(super) fn callback(&self, req: &Request) -> Response {
        let id = req.param("id").unwrap_or("").to_string();
        let token = req.param("token").unwrap_or("").to_string();
        if let Some(r) = self.admit(req, None) {
            return r;
        }
        let (body, files) = payload(req);
        let kind = body["type"].as_u64().unwrap_or(0);
        let mut s = self.state();
        let Some((known_id, channel)) = s.interactions.get(&token).cloned() else {
            s.unexpected
                .push(format!("{} {} (unknown interaction)", req.method, req.path));
            drop(s);
            self.changed();
            return json_error(404, "Unknown interaction");
        };
        if known_id != id || s.callbacks.iter().any(|c| c.interaction_id == id) {
            drop(s);
            return json_error(400, "Interaction has already been acknowledged.");
        }
        s.callbacks.push(Callback {
            interaction_id: id.clone(),
            kind,
            data: body["data"].clone(),
            at: Instant::now(),
            session: session_of(req),
        });
        if kind == 4 {
            let mid = s.new_id();
            s.sent.push(Sent {
                kind: SentKind::Followup,
                message_id: mid,
                channel,
                content: body["data"]["content"].as_str().unwrap_or("").to_string(),
                attachments: files.into_iter().map(|(n, _)| n).collect(),
                interaction: Some(id),
                components: body["data"]["components"].as_array().cloned(),
                at: Instant::now(),
                session: session_of(req),
                allowed_mentions: body["data"].get("allowed_mentions").cloned(),
            });
        }
        drop(s);
        self.changed();
        Response::new(204)
    }

    pub(super) fn webhook(&self, req: &Request) -> Response {
        let token = req.param("token").unwrap_or("").to_string();
        if let Some(r) = self.admit(req, None) {
            return r;
        }
        let (body, files) = payload(req);
        let mut s = self.state();
        let Some((interaction, channel)) = s.interactions.get(&token).cloned() else {
            s.unexpected
                .push(format!("{} {} (unknown webhook token)", req.method, req.path));
            drop(s);
            self.changed();
            return json_error(404, "Unknown Webhook");
        };
        if !s.callbacks.iter().any(|c| c.interaction_id == interaction) {
            drop(s);
            return json_error(404, "Unknown Message (interaction not acknowledged)");
        }
        let target = req.param("message").map(str::to_string);
        let kind = match (req.method.as_str(), target.as_deref()) {
            ("POST", None) => SentKind::Followup,
            ("PATCH", Some("@original")) => SentKind::InteractionEdit,
            ("PATCH", Some(_)) => SentKind::Followup,
            _ => {
                drop(s);
                return Response::json(
                    200,
                    &message_json(&interaction, &channel, &TestUser::argos(), "", &[], false, false),
                );
            }
        };
        let content = body["content"].as_str().unwrap_or("").to_string();
        let id = match target.as_deref() {
            Some("@original") => interaction.clone(),
            Some(m) => m.to_string(),
            None => s.new_id(),
        };
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        s.sent.push(Sent {
            kind,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: Some(interaction),
            components: body["components"].as_array().cloned(),
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        self.changed();
        Response::json(
            200,
            &message_json(&id, &channel, &TestUser::argos(), &content, &[], false, false),
        )
    }
}

pub(super) fn too_many(retry: Duration, global: bool) -> Response {
    let secs = retry.as_secs_f64().max(0.001);
    // Discord's documented body has no `code`; serenity then reports "could not decode json",
    // so the fake adds `code: 0` to keep failures readable.
    let body = json!({"message": "You are being rate limited.", "retry_after": secs, "global": global, "code": 0});
    Response::json(429, &body)
        .with_header("retry-after", &format!("{}", secs.ceil() as u64))
        .with_header("x-ratelimit-scope", if global { "global" } else { "user" })
        .with_header("x-ratelimit-global", if global { "true" } else { "false" })
}

pub(super) fn router(inner: Arc<Inner>) -> Router {
    let i = |inner: &Arc<Inner>| inner.clone();
    let dm = inner.clone();
    let (a, b, c, d, e, f, g, h, k, l, m, n) = (
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
    );
    Router::new()
        .route("GET", "/api/v10/gateway", move |req| {
            if let Some(r) = a.admit(&req, None) {
                return r;
            }
            Response::json(200, &json!({"url": a.ws_url}))
        })
        .route("GET", "/api/v10/gateway/bot", move |req| {
            if let Some(r) = b.authorized(&req).or_else(|| b.admit(&req, None)) {
                return r;
            }
            Response::json(
                200,
                &json!({"url": b.ws_url, "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}),
            )
        })
        .route("GET", "/api/v10/users/@me", move |req| {
            if let Some(r) = c.authorized(&req).or_else(|| c.admit(&req, None)) {
                return r;
            }
            Response::json(200, &bot_user_json())
        })
        .route("POST", "/api/v10/users/@me/channels", move |req| dm.open_dm(&req))
        .route("*", "/api/v10/applications/{app}/commands", move |req| d.commands(&req))
        .route("*", "/api/v10/applications/{app}/guilds/{guild}/commands", move |req| e.commands(&req))
        .route("POST", "/api/v10/channels/{channel}/messages", move |req| {
            f.announced(&req, f.create_message(&req))
        })
        .route("PATCH", "/api/v10/channels/{channel}/messages/{message}", move |req| {
            g.announced(&req, g.edit_message(&req))
        })
        .route("GET", "/api/v10/channels/{channel}/messages/{message}", move |req| h.get_message(&req))
        .route("POST", "/api/v10/interactions/{id}/{token}/callback", move |req| {
            k.announced(&req, k.callback(&req))
        })
        .route("*", "/api/v10/webhooks/{app}/{token}/messages/{message}", move |req| {
            l.announced(&req, l.webhook(&req))
        })
        .route("POST", "/api/v10/webhooks/{app}/{token}", move |req| m.announced(&req, m.webhook(&req)))
        .fallback(move |req| {
            n.state().unexpected.push(format!("{} {}", req.method, req.path));
            n.changed();
            json_error(404, "404: Not Found")
        })
}
