//! The fake Slack's Web API (`/api/{method}`), the file upload URLs (`/upload/{file}`) and the
//! `response_url`s (`/respond/{n}`), on the test HTTP server. Parameters are read the way Slack
//! reads them (query string, form body or JSON body, whichever the client used), and answers
//! use Slack's envelope: HTTP 200 with `{"ok":false,"error":...}` for API errors, 429 with
//! `Retry-After` for rate limits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::super::http_server::{parse_urlencoded, Request, Response as HttpResponse, Router};
use super::events::{block_errors, stored_message_json};
use super::params::{array, flag, multipart_parts, params, retry_after, string};
use super::{
    ok, ApiCall, Ephemeral, Injected, Inner, Post, Response, StoredMessage, Update, Upload, APP_TOKEN, BOT_ID,
    BOT_TOKEN, BOT_USER_ID, DEPLOYERS_GROUP, DEPLOYERS_HANDLE, RESPONSE_URL_USES, TEAM_DOMAIN, TEAM_ID,
};

/// The methods the fake serves.
const METHODS: &[&str] = &[
    "auth.test",
    "apps.connections.open",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
    "usergroups.list",
    "usergroups.users.list",
];

/// Slack's limit on a message's `text`.
const MAX_TEXT: usize = 40_000;

type Cell = Arc<Mutex<Option<Arc<Inner>>>>;

fn inner(cell: &Cell) -> Arc<Inner> {
    cell.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .expect("fake Slack is started")
}

pub(super) fn router(cell: Cell) -> Router {
    let (a, b, c, d) = (cell.clone(), cell.clone(), cell.clone(), cell);
    Router::new()
        .route("*", "/api/{method}", move |req| inner(&a).api(&req))
        .route("POST", "/upload/{file}", move |req| inner(&b).upload_bytes(&req))
        .route("POST", "/respond/{n}", move |req| inner(&c).respond(&req))
        .fallback(move |req| {
            inner(&d).unexpected(format!("{} {}", req.method, req.path));
            HttpResponse::text(404, "not found\n")
        })
}

/// Why a call was refused.
enum Fail {
    /// `{"ok":false,"error":...}`, with Slack's `errors` details (e.g. for `invalid_blocks`).
    Error(String, Vec<String>),
    /// 429 with this `Retry-After`.
    Limited(u64),
}

fn error(e: &str) -> Fail {
    Fail::Error(e.to_string(), Vec::new())
}

impl Inner {
    /// Records the call and answers it.
    fn answer(&self, method: &str, params: Value, result: Result<Value, Fail>) -> HttpResponse {
        let (outcome, response) = match result {
            Ok(v) => ("ok".to_string(), HttpResponse::json(200, &ok(v))),
            Err(Fail::Error(e, errors)) => {
                let mut body = json!({"ok": false, "error": e});
                if !errors.is_empty() {
                    let messages: Vec<String> = errors.iter().map(|m| format!("[ERROR] {m}")).collect();
                    body["errors"] = json!(errors);
                    body["response_metadata"] = json!({"messages": messages});
                }
                (e, HttpResponse::json(200, &body))
            }
            Err(Fail::Limited(secs)) => {
                let mut s = self.state();
                s.rate_limited += 1;
                let channel = string(&params, "channel").unwrap_or_default();
                s.limited.push(format!("{method} {channel}").trim_end().to_string());
                drop(s);
                let body = json!({"ok": false, "error": "ratelimited"});
                (
                    "ratelimited".to_string(),
                    HttpResponse::json(429, &body).with_header("retry-after", &secs.to_string()),
                )
            }
        };
        self.state().calls.push(ApiCall {
            method: method.to_string(),
            params,
            outcome,
            at: Instant::now(),
        });
        self.changed();
        response
    }

    fn api(&self, req: &Request) -> HttpResponse {
        let method = req.param("method").unwrap_or("").to_string();
        let params = params(req);
        if req.path.contains("//") {
            self.unexpected(format!(
                "{} {} (double slash: the API base URL must not end with '/')",
                req.method, req.path
            ));
            return self.answer(&method, params, Err(error("unknown_method")));
        }
        if !METHODS.contains(&method.as_str()) {
            self.unexpected(format!("{} {} (method not served by the fake)", req.method, req.path));
            self.state().calls.push(ApiCall {
                method,
                params,
                outcome: "404".into(),
                at: Instant::now(),
            });
            return HttpResponse::json(404, &json!({"ok": false, "error": "unknown_method"}));
        }
        let result = self
            .check_token(req, &params, &method)
            .and_then(|()| self.injected(&method))
            .and_then(|()| match method.as_str() {
                "auth.test" => Ok(self.auth_test()),
                "apps.connections.open" => Ok(self.connections_open()),
                "chat.postMessage" => self.post_message(&params),
                "chat.update" => self.update(&params),
                "chat.postEphemeral" => self.post_ephemeral(&params),
                "files.getUploadURLExternal" => self.upload_url(&params),
                "files.completeUploadExternal" => self.complete_upload(&params),
                "usergroups.list" => Ok(self.usergroups(&params)),
                "usergroups.users.list" => self.usergroup_users(&params),
                _ => Err(error("unknown_method")),
            });
        self.answer(&method, params, result)
    }

    /// The bot token for everything but `apps.connections.open`, which takes the app token.
    fn check_token(&self, req: &Request, params: &Value, method: &str) -> Result<(), Fail> {
        let token = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_string)
            .or_else(|| string(params, "token"));
        let wanted = if method == "apps.connections.open" {
            APP_TOKEN
        } else {
            BOT_TOKEN
        };
        let why = match token.as_deref() {
            Some(t) if t == wanted => return Ok(()),
            None => "not_authed",
            Some(t) if t == APP_TOKEN || t == BOT_TOKEN => "not_allowed_token_type",
            Some(_) => "invalid_auth",
        };
        self.unexpected(format!("{} {} ({why})", req.method, req.path));
        Err(error(why))
    }

    fn injected(&self, method: &str) -> Result<(), Fail> {
        let next = self.state().injected.get_mut(method).and_then(|q| q.pop_front());
        match next {
            None => Ok(()),
            Some(Injected::Error(e)) => Err(Fail::Error(e, Vec::new())),
            Some(Injected::RateLimit(secs)) => Err(Fail::Limited(secs)),
        }
    }

    fn auth_test(&self) -> Value {
        json!({
            "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
            "team": "Argos Tests",
            "user": "argos",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })
    }

    fn connections_open(&self) -> Value {
        let mut s = self.state();
        s.next_ticket += 1;
        let ticket = s.next_ticket;
        s.tickets.insert(ticket);
        s.connections_opened += 1;
        json!({"url": format!("{}/link?ticket={ticket}", self.ws_base)})
    }

    /// Checks a message's content the way Slack does; `required`: text or blocks must be there.
    fn check_content(&self, what: &str, text: &str, blocks: Option<&[Value]>, required: bool) -> Result<(), Fail> {
        if required && text.is_empty() && blocks.is_none_or(|b| b.is_empty()) {
            self.unexpected(format!("{what} (no_text: neither text nor blocks)"));
            return Err(error("no_text"));
        }
        if text.chars().count() > MAX_TEXT {
            self.unexpected(format!("{what} (msg_too_long: {} characters)", text.chars().count()));
            return Err(error("msg_too_long"));
        }
        let errors = block_errors(blocks.unwrap_or_default());
        if !errors.is_empty() {
            self.unexpected(format!("{what} (invalid_blocks: {errors:?})"));
            return Err(Fail::Error("invalid_blocks".into(), errors));
        }
        Ok(())
    }

    /// The channel a message goes to. A user id stands for the bot's direct message channel with
    /// that user, which Slack opens and answers with (`D…`).
    fn known_channel(&self, what: &str, params: &Value) -> Result<String, Fail> {
        let channel = string(params, "channel").unwrap_or_default();
        if let Some(rest) = channel.strip_prefix('U') {
            let dm = format!("D{rest}");
            self.state()
                .channels
                .entry(dm.clone())
                .or_insert_with(|| "directmessage".into());
            return Ok(dm);
        }
        if self.state().channels.contains_key(&channel) {
            return Ok(channel);
        }
        self.unexpected(format!("{what} (channel_not_found: {channel:?})"));
        Err(error("channel_not_found"))
    }

    /// One `chat.postMessage` in `channel`, or the 429.
    fn admit_post(&self, channel: &str) -> Result<(), Fail> {
        let limits = self.limits();
        let now = Instant::now();
        let mut s = self.state();
        let log = s.post_log.entry(channel.to_string()).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.post_window)
        {
            log.pop_front();
        }
        if log.len() >= limits.post_per_channel as usize {
            return Err(Fail::Limited(retry_after(limits.post_window, log[0], now)));
        }
        log.push_back(now);
        Ok(())
    }

    /// One `chat.update` in the workspace, or the 429.
    fn admit_update(&self) -> Result<(), Fail> {
        let limits = self.limits();
        let now = Instant::now();
        let mut s = self.state();
        let log = &mut s.update_log;
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.update_window)
        {
            log.pop_front();
        }
        if log.len() >= limits.updates_per_window as usize {
            return Err(Fail::Limited(retry_after(limits.update_window, log[0], now)));
        }
        log.push_back(now);
        Ok(())
    }

    fn post_message(&self, params: &Value) -> Result<Value, Fail> {
        let channel = self.known_channel("chat.postMessage", params)?;
        let text = string(params, "text").unwrap_or_default();
        let blocks = array(params, "blocks").unwrap_or_default();
        let thread_ts = string(params, "thread_ts");
        self.check_content("chat.postMessage", &text, Some(&blocks), true)?;
        self.admit_post(&channel)?;
        let post = {
            let mut s = self.state();
            let ts = s.new_ts();
            let post = Post {
                channel: channel.clone(),
                ts: ts.clone(),
                text: text.clone(),
                blocks: blocks.clone(),
                thread_ts: thread_ts.clone(),
                link_names: flag(params, "link_names"),
                params: params.clone(),
                at: Instant::now(),
            };
            s.messages.insert(
                (channel.clone(), ts.clone()),
                StoredMessage {
                    ts,
                    user: BOT_USER_ID.to_string(),
                    bot: true,
                    text,
                    blocks,
                    thread_ts,
                    edits: 0,
                    deleted: false,
                },
            );
            s.posts.push(post.clone());
            post
        };
        self.echo_post(&post);
        let message = stored_message_json(self.state().message(&channel, &post.ts).expect("just stored"));
        Ok(json!({"channel": channel, "ts": post.ts, "message": message}))
    }

    fn update(&self, params: &Value) -> Result<Value, Fail> {
        let channel = string(params, "channel").unwrap_or_default();
        let ts = string(params, "ts").unwrap_or_default();
        let text = string(params, "text");
        let blocks = array(params, "blocks");
        {
            let s = self.state();
            match s.message(&channel, &ts) {
                Some(m) if m.deleted => return Err(error("message_not_found")),
                Some(m) if !m.bot => return Err(error("cant_update_message")),
                Some(_) => {}
                None => {
                    drop(s);
                    self.unexpected(format!("chat.update (message_not_found: {channel}/{ts})"));
                    return Err(error("message_not_found"));
                }
            }
        }
        let required = text.is_none() && blocks.is_none();
        self.check_content(
            "chat.update",
            text.as_deref().unwrap_or(""),
            blocks.as_deref(),
            required,
        )?;
        self.admit_update()?;
        let mut s = self.state();
        let m = s
            .messages
            .get_mut(&(channel.clone(), ts.clone()))
            .expect("checked above");
        if let Some(t) = &text {
            m.text = t.clone();
        }
        // Slack keeps the blocks when `blocks` is left out (an empty array removes them).
        if let Some(b) = &blocks {
            m.blocks = b.clone();
        }
        m.edits += 1;
        let message = stored_message_json(m);
        let (text_now, blocks_now) = (m.text.clone(), m.blocks.clone());
        s.updates.push(Update {
            channel: channel.clone(),
            ts: ts.clone(),
            text,
            blocks,
            text_now: text_now.clone(),
            blocks_now,
            params: params.clone(),
            at: Instant::now(),
        });
        Ok(json!({"channel": channel, "ts": ts, "text": text_now, "message": message}))
    }

    fn post_ephemeral(&self, params: &Value) -> Result<Value, Fail> {
        let channel = self.known_channel("chat.postEphemeral", params)?;
        let Some(user) = string(params, "user") else {
            self.unexpected("chat.postEphemeral (user_not_found: no user)".into());
            return Err(error("user_not_found"));
        };
        let text = string(params, "text").unwrap_or_default();
        let blocks = array(params, "blocks").unwrap_or_default();
        self.check_content("chat.postEphemeral", &text, Some(&blocks), true)?;
        let mut s = self.state();
        let message_ts = s.new_ts();
        s.ephemerals.push(Ephemeral {
            channel,
            user,
            text,
            blocks,
        });
        Ok(json!({"message_ts": message_ts}))
    }

    fn upload_url(&self, params: &Value) -> Result<Value, Fail> {
        let filename = string(params, "filename");
        let length = string(params, "length").and_then(|l| l.parse::<usize>().ok());
        let (Some(filename), Some(length)) = (filename, length) else {
            self.unexpected(format!("files.getUploadURLExternal (invalid_arguments: {params})"));
            return Err(error("invalid_arguments"));
        };
        let mut s = self.state();
        let file_id = format!("F0ARGOS{:04}", s.new_id());
        s.uploads.push(Upload {
            file_id: file_id.clone(),
            filename,
            length,
            bytes: None,
            content_type: None,
            completed: false,
            title: None,
            channel: None,
            thread_ts: None,
            initial_comment: None,
        });
        let upload_url = format!("{}/upload/{file_id}", self.http_base);
        Ok(json!({"upload_url": upload_url, "file_id": file_id}))
    }

    /// The upload URL: the raw bytes (what slack-morphism's `files_upload_via_url` sends, with the
    /// request's `content_type` and the bot token), or a multipart form with one file.
    fn upload_bytes(&self, req: &Request) -> HttpResponse {
        let file = req.param("file").unwrap_or("").to_string();
        let ct = req.header("content-type").map(str::to_string);
        let bytes = if ct.as_deref().is_some_and(|c| c.starts_with("multipart/")) {
            let parts = multipart_parts(req);
            let part = parts.iter().find(|(_, f, _)| f.is_some()).or(parts.first());
            part.map(|(_, _, b)| b.clone()).unwrap_or_default()
        } else {
            req.body.clone()
        };
        let mut s = self.state();
        let Some(u) = s.uploads.iter_mut().find(|u| u.file_id == file) else {
            drop(s);
            self.unexpected(format!("POST {} (unknown upload)", req.path));
            return HttpResponse::text(404, "not found\n");
        };
        let n = bytes.len();
        u.bytes = Some(bytes);
        u.content_type = ct;
        drop(s);
        self.changed();
        HttpResponse::text(200, format!("OK - {n}"))
    }

    fn complete_upload(&self, params: &Value) -> Result<Value, Fail> {
        let files = array(params, "files").unwrap_or_default();
        if files.is_empty() {
            self.unexpected(format!("files.completeUploadExternal (invalid_arguments: {params})"));
            return Err(error("invalid_arguments"));
        }
        let channel = string(params, "channel_id")
            .or_else(|| string(params, "channels").map(|c| c.split(',').next().unwrap_or("").to_string()));
        let mut s = self.state();
        let mut out = Vec::new();
        for f in &files {
            let id = f["id"].as_str().unwrap_or("");
            let Some(u) = s.uploads.iter_mut().find(|u| u.file_id == id) else {
                drop(s);
                self.unexpected(format!("files.completeUploadExternal (file_not_found: {id:?})"));
                return Err(error("file_not_found"));
            };
            if u.bytes.is_none() {
                drop(s);
                self.unexpected(format!("files.completeUploadExternal ({id} was never uploaded)"));
                return Err(error("file_not_found"));
            }
            u.completed = true;
            u.title = f["title"].as_str().map(str::to_string);
            u.channel = channel.clone();
            u.thread_ts = string(params, "thread_ts");
            u.initial_comment = string(params, "initial_comment");
            let title = u.title.clone().unwrap_or_else(|| u.filename.clone());
            out.push(json!({"id": u.file_id, "name": u.filename, "title": title}));
        }
        Ok(json!({"files": out}))
    }

    fn group_json(&self, id: &str, members: &[String], include_users: bool) -> Value {
        let handle = if id == DEPLOYERS_GROUP { DEPLOYERS_HANDLE } else { id };
        let mut g = json!({
            "id": id,
            "team_id": TEAM_ID,
            "is_usergroup": true,
            "is_subteam": true,
            "name": handle,
            "description": format!("The {handle} of the test workspace"),
            "handle": handle,
            "is_external": false,
            "date_create": 1_700_000_000,
            "date_update": 1_700_000_000,
            "date_delete": 0,
            "auto_type": null,
            "created_by": "U0ADMIN",
            "updated_by": "U0ADMIN",
            "deleted_by": null,
            "prefs": {"channels": [], "groups": []},
            "user_count": members.len(),
        });
        if include_users {
            g["users"] = json!(members);
        }
        g
    }

    fn usergroups(&self, params: &Value) -> Value {
        let include_users = flag(params, "include_users");
        let groups = self.state().groups.clone();
        let list: Vec<Value> = groups
            .iter()
            .map(|(id, members)| self.group_json(id, members, include_users))
            .collect();
        json!({"usergroups": list})
    }

    fn usergroup_users(&self, params: &Value) -> Result<Value, Fail> {
        let id = string(params, "usergroup").unwrap_or_default();
        match self.state().groups.get(&id) {
            Some(users) => Ok(json!({"users": users})),
            None => Err(error("no_such_subteam")),
        }
    }

    /// A POST to a `response_url`: recorded, and for an interaction's, `replace_original` /
    /// `delete_original` applied to the clicked message. Answered `ok` as `text/plain` (what
    /// slack-morphism's `respond_to_event` accepts; a 200 with no content type would be read as
    /// JSON and fail).
    fn respond(&self, req: &Request) -> HttpResponse {
        let n: u32 = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        let body: Value = if req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form"))
        {
            parse_urlencoded(&req.body_text())
                .into_iter()
                .find(|(k, _)| k == "payload")
                .and_then(|(_, v)| serde_json::from_str(&v).ok())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_slice(&req.body).unwrap_or(Value::Null)
        };
        let mut s = self.state();
        let Some(target) = n.checked_sub(1).and_then(|i| s.targets.get_mut(i as usize)) else {
            drop(s);
            self.unexpected(format!("POST {} (unknown response_url)", req.path));
            return HttpResponse::text(404, "no_service\n");
        };
        target.uses += 1;
        let target = target.clone();
        drop(s);
        if target.uses > RESPONSE_URL_USES {
            self.unexpected(format!("POST {} (response_url used {} times)", req.path, target.uses));
            return HttpResponse::text(404, "used_url\n");
        }
        if !body.is_object() {
            self.unexpected(format!("POST {} (body is not a JSON object)", req.path));
            return HttpResponse::text(400, "invalid_payload\n");
        }
        let text = body["text"].as_str().unwrap_or("").to_string();
        let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
        let delete_original = flag(&body, "delete_original");
        let replace_original = flag(&body, "replace_original");
        if !delete_original
            && self
                .check_content(&format!("POST {}", req.path), &text, Some(&blocks), true)
                .is_err()
        {
            return HttpResponse::text(400, "invalid_blocks\n");
        }
        let mut s = self.state();
        if let Some(ts) = &target.message_ts {
            if let Some(m) = s.messages.get_mut(&(target.channel.clone(), ts.clone())) {
                if delete_original {
                    m.deleted = true;
                } else if replace_original {
                    m.text = text.clone();
                    m.blocks = blocks.clone();
                    m.edits += 1;
                }
            }
        }
        s.responses.push(Response {
            envelope_id: target.envelope_id,
            channel: target.channel,
            message_ts: target.message_ts,
            text,
            blocks,
            response_type: body["response_type"].as_str().map(str::to_string),
            replace_original,
            at: Instant::now(),
        });
        drop(s);
        self.changed();
        HttpResponse::text(200, "ok")
    }
}
