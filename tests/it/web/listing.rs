//! The jobs list and its filters, an environment's history with its SVG timeline, and the
//! approvals page, over plain HTTP with a session opened by a sign-in link: what they list is
//! what the store holds, and only on environments the person may see.
use crate::support;

use std::time::Duration;

use argos::permissions::Identity;
use argos::store::{ApprovalState, Choice, JobState, LeaseSettings, NewJob, StartOutcome, Store};
use support::world::{Console, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"permissions:
  roles:
    admins: { console_users: [alice] }
    viewers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: viewers
      environments: [sandbox]
      actions: [status]
web:
  public_url: "http://127.0.0.1:9"
"#;

/// An answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn request(port: u16, method: &str, path: &str, cookie: Option<&str>) -> Answer {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: argos_session={c}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// Signs `who` in through a link and returns the session cookie's value.
async fn sign_in(port: u16, store: &Store, who: &str) -> String {
    let token = format!("{:0>64}", hex_of(who));
    store
        .create_sign_in_link(&token, &Identity::named(argos::address::Surface::CONSOLE, who), 60_000)
        .unwrap();
    let page = request(port, "GET", &format!("/login/{token}"), None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("action=\"/login/{token}\"")),
        "{}",
        page.body
    );
    let signed = request(port, "POST", &format!("/login/{token}"), None).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert!(signed.head.contains("\r\nlocation: /"));
    let cookie = signed
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.contains("; path=/; httponly; samesite=lax; max-age=43200"),
        "{cookie}"
    );
    assert!(!cookie.contains("secure"), "plain http: not Secure");
    cookie
        .strip_prefix("argos_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn job(env: &str, action: &str, by: &str, args: &str) -> NewJob {
    NewJob {
        requester_id: by.into(),
        requester_name: by.into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "ops".into(),
        env: env.into(),
        action: action.into(),
        args: args.into(),
        person: format!("console:{by}"),
        break_glass: None,
    }
}

/// Runs a job to `state` in the store; returns its id.
fn ran(store: &Store, new: NewJob, state: JobState) -> u64 {
    let StartOutcome::Started { id, token } = store.start_job(&new, "elsewhere", LeaseSettings::default()).unwrap()
    else {
        panic!("the job starts");
    };
    store
        .finish_and_release(id, token, state, &format!("{state} here"))
        .unwrap();
    id
}

const SHA_A: &str = "aaaaaaaaaaaa1111111111111111111111111111";
const SHA_B: &str = "bbbbbbbbbbbb2222222222222222222222222222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_history_and_approvals_list_what_the_store_holds_for_who_may_see_it() {
    let w = World::builder().config(CONFIG).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let port = addr.port();
    let store = bot.store().clone();
    let good = ran(
        &store,
        job(
            "staging",
            "deploy",
            "alice",
            &format!(r#"{{"ref":"main","commit":"{SHA_A}"}}"#),
        ),
        JobState::Succeeded,
    );
    let bad = ran(
        &store,
        job(
            "staging",
            "deploy",
            "carol",
            &format!(r#"{{"ref":"feature-<x>","commit":"{SHA_B}"}}"#),
        ),
        JobState::Failed,
    );
    let back = ran(
        &store,
        job(
            "staging",
            "rollback",
            "alice",
            &format!(r#"{{"ref":"main","commit":"{SHA_A}"}}"#),
        ),
        JobState::Succeeded,
    );
    let sandbox = ran(&store, job("sandbox", "status", "bob", "{}"), JobState::Succeeded);
    // A request waiting on staging, with a vote, and a decided one.
    let waiting = store
        .insert_job(&job("staging", "decommission", "carol", "{}"), JobState::Queued)
        .unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::minutes(30);
    let a = store
        .insert_approval(waiting, "d1", "Plan: delete stack argos-staging", 2, expires)
        .unwrap();
    store.add_vote(a, "dave", "dave", Choice::Approve, None).unwrap();
    let denied = store
        .insert_job(&job("staging", "clean", "carol", "{}"), JobState::Queued)
        .unwrap();
    let d = store.insert_approval(denied, "d2", "Plan: clean", 1, expires).unwrap();
    store
        .add_vote(d, "erin", "erin", Choice::Deny, Some("not today"))
        .unwrap();
    assert!(store.decide_approval(d, ApprovalState::Denied).unwrap());

    assert_eq!(request(port, "GET", "/jobs", None).await.status, 401);
    assert_eq!(request(port, "GET", "/envs/staging", None).await.status, 401);
    assert_eq!(request(port, "GET", "/approvals", None).await.status, 401);
    let alice = sign_in(port, &store, "alice").await;

    // The jobs list, newest first, and its filters.
    let all = request(port, "GET", "/jobs", Some(&alice)).await;
    assert_eq!(all.status, 200);
    assert!(all.head.contains("content-type: text/html; charset=utf-8"));
    assert!(all.head.contains("cache-control: no-store") && all.head.contains("referrer-policy: no-referrer"));
    let order: Vec<usize> = [denied, waiting, sandbox, back, bad, good]
        .iter()
        .map(|id| {
            all.body
                .find(&format!("href=\"/jobs/{id}\""))
                .unwrap_or_else(|| panic!("job {id} listed"))
        })
        .collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "newest first: {order:?}");
    assert!(
        all.body.contains("feature-&#60;x&#62; @ bbbbbbbbbbbb"),
        "escaped and shortened: {}",
        all.body
    );
    let failed = request(port, "GET", "/jobs?env=staging&result=failed", Some(&alice)).await;
    assert!(failed.body.contains(&format!("href=\"/jobs/{bad}\"")));
    assert_eq!(failed.body.matches("<tr class=\"job\">").count(), 1, "{}", failed.body);
    assert!(failed.body.contains("<option value=\"failed\" selected>"));
    let by_person = request(
        port,
        "GET",
        "/jobs?env=&action=deploy&result=&person=alice",
        Some(&alice),
    )
    .await;
    assert_eq!(by_person.body.matches("<tr class=\"job\">").count(), 1);
    assert!(by_person.body.contains(&format!("href=\"/jobs/{good}\"")));

    // The history: the deploys under an SVG timeline, the rollback marked.
    let history = request(port, "GET", "/envs/staging", Some(&alice)).await;
    assert_eq!(history.status, 200);
    let svg = &history.body[history.body.find("<svg").unwrap()..history.body.find("</svg>").unwrap()];
    assert_eq!(svg.matches("<rect class=\"deploy").count(), 3, "{svg}");
    assert!(svg.contains("class=\"deploy succeeded\"") && svg.contains("class=\"deploy failed\""));
    assert!(
        svg.contains("stroke-dasharray") && svg.contains("↶"),
        "the rollback is marked"
    );
    assert!(
        svg.contains(&format!("#{bad} deploy feature-&lt;x&gt; @ bbbbbbbbbbbb failed")),
        "{svg}"
    );
    assert!(!history.body.contains("decommission"), "only deploys");

    // Approvals: the waiting request with its plan and vote, the decided one with its vote.
    let approvals = request(port, "GET", "/approvals", Some(&alice)).await;
    assert_eq!(approvals.status, 200);
    assert!(approvals.body.contains("Plan: delete stack argos-staging"));
    assert!(approvals.body.contains("Needs 2 approval(s)"));
    assert!(approvals.body.contains("dave: approve"));
    assert!(approvals.body.contains("erin: deny (not today)"));
    assert!(approvals.body.contains("<td>denied</td>"));

    // The overview: the version deployed last, the pending request.
    let overview = request(port, "GET", "/", Some(&alice)).await;
    assert!(
        overview
            .body
            .contains("<code class=\"deployed\">main @ aaaaaaaaaaaa</code>"),
        "{}",
        overview.body
    );
    assert!(overview
        .body
        .contains(&format!("Waiting for approval: <a href=\"/jobs/{waiting}\">")));

    // bob sees sandbox only, everywhere.
    let bob = sign_in(port, &store, "bob").await;
    let bobs = request(port, "GET", "/jobs", Some(&bob)).await;
    assert_eq!(bobs.body.matches("<tr class=\"job\">").count(), 1);
    assert!(bobs.body.contains(&format!("href=\"/jobs/{sandbox}\"")));
    assert_eq!(request(port, "GET", "/envs/staging", Some(&bob)).await.status, 403);
    assert_eq!(
        request(port, "GET", &format!("/jobs/{good}"), Some(&bob)).await.status,
        403
    );
    assert_eq!(
        request(port, "GET", &format!("/jobs/{good}/log?offset=0"), Some(&bob))
            .await
            .status,
        403
    );
    let bob_approvals = request(port, "GET", "/approvals", Some(&bob)).await;
    assert!(!bob_approvals.body.contains("argos-staging") && bob_approvals.body.contains("Nothing is waiting."));
    assert_eq!(request(port, "GET", "/jobs/99999", Some(&alice)).await.status, 404);

    // The log tail endpoint, as the job page polls it.
    store.append_log(good, "TASK [deploy]\nok\n", 1 << 20).unwrap();
    let tail = request(port, "GET", &format!("/jobs/{good}/log?offset=5"), Some(&alice)).await;
    assert_eq!(tail.status, 200);
    assert!(tail.head.contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_str(&tail.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"text": "[deploy]\nok\n", "next_offset": 17, "finished": true})
    );
    // Signing out ends the session: the cookie opens nothing any more.
    let out = request(port, "POST", "/logout", Some(&alice)).await;
    assert_eq!(out.status, 303);
    assert!(out
        .head
        .contains("set-cookie: argos_session=; path=/; httponly; samesite=lax; max-age=0"));
    assert_eq!(request(port, "GET", "/", Some(&alice)).await.status, 401);
    assert_eq!(
        request(port, "GET", "/jobs", Some(&bob)).await.status,
        200,
        "bob's session goes on"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    server.abort();
}
