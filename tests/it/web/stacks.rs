//! The overview's stack status: each environment's CloudFormation status, "no stack", or
//! "unknown: <cause>", from a cache that one DescribeStacks refreshes (shared by concurrent
//! page loads) at most once per `web.stack_status_secs`, shown with its age. On moto (a
//! commissioned environment and one that is not) and on the scripted fake AWS, which counts
//! the calls and answers a failure.
use crate::support;

use argos::permissions::Identity;
use argos::store::Store;
use support::moto::Moto;
use support::world::{Console, World};
use support::TestProject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
web:
  public_url: "http://127.0.0.1:9"
"#;

/// `GET path` from `from` (a loopback address) with `headers`: (status, body).
pub(super) async fn get(port: u16, path: &str, from: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// A session for `who`, opened with a sign-in link as a browser would: the cookie's value.
pub(super) async fn session(port: u16, store: &Store, who: &str) -> String {
    let token: String = format!("{:0>64}", who.bytes().map(|b| format!("{b:02x}")).collect::<String>());
    store
        .create_sign_in_link(&token, &Identity::named(argos::address::Surface::CONSOLE, who), 60_000)
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!("POST /login/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let cookie = out
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: argos_session="))
        .unwrap_or_else(|| panic!("no session cookie in {out}"));
    cookie.split(';').next().unwrap().to_string()
}

/// The stack line of `env`'s card on the overview.
#[track_caller]
fn stack_of(body: &str, env: &str) -> String {
    let card = &body[body
        .find(&format!("id=\"env-{env}\""))
        .unwrap_or_else(|| panic!("no {env} in {body}"))..];
    let start = card.find("<span class=\"stack").expect("a stack line");
    let span = &card[start..];
    let text = &span[span.find('>').unwrap() + 1..span.find("</span>").unwrap()];
    text.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_moto_a_commissioned_environment_shows_its_stack_status_and_another_no_stack() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, CONFIG);
    let Console { bot, .. } = Console::on(&project).await;
    let template = r#"{"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}"#;
    let tag = |k: &str, v: &str| aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build();
    bot.engine()
        .aws
        .cfn()
        .await
        .create_stack()
        .stack_name("argos-staging")
        .template_body(template)
        .tags(tag("App", "argos"))
        .tags(tag("Env", "staging"))
        .send()
        .await
        .unwrap();
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let alice = session(addr.port(), bot.store(), "alice").await;
    let cookie = format!("argos_session={alice}");
    let (status, body) = get(addr.port(), "/", "127.0.0.1", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack_of(&body, "staging"), "CREATE_COMPLETE");
    assert_eq!(stack_of(&body, "sandbox"), "no stack");
    assert!(
        body.contains("Stack statuses <span id=\"stacks-read\">read 0 s ago</span>"),
        "{body}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_loads_within_the_ttl_share_one_describe_stacks_and_a_failure_shows_unknown() {
    let w = World::builder().config(CONFIG).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    support::add_staging_stack(&w.aws, bot.engine(), "ami-0123456789abcdef0", &[], &[]);
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let port = addr.port();
    let cookie = format!("argos_session={}", session(port, bot.store(), "alice").await);
    w.aws.clear_calls();

    // Eight page loads at once, then two more: one DescribeStacks for all of them (TTL 30 s).
    let loads: Vec<_> = (0..8)
        .map(|_| {
            let cookie = cookie.clone();
            tokio::spawn(async move { get(port, "/", "127.0.0.1", &[("Cookie", &cookie)]).await })
        })
        .collect();
    for load in loads {
        let (status, body) = load.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(stack_of(&body, "staging"), "CREATE_COMPLETE");
        assert_eq!(stack_of(&body, "sandbox"), "no stack");
    }
    for _ in 0..2 {
        let (status, _) = get(port, "/", "127.0.0.1", &[("Cookie", &cookie)]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(w.aws.count("DescribeStacks"), 1, "{:?}", w.aws.actions());
    server.abort();

    // A failing read (a fresh cache): the page still answers, each environment "unknown"
    // with the short cause, and the failure is kept for the TTL too.
    let Console { bot, .. } = Console::on(&w.project).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let port = addr.port();
    // The same store: alice's session holds on this bot too.
    w.aws.clear_calls();
    w.aws.fail_next(
        "DescribeStacks",
        403,
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/argos is not authorized to perform: cloudformation:DescribeStacks",
    );
    for _ in 0..2 {
        let (status, body) = get(port, "/", "127.0.0.1", &[("Cookie", &cookie)]).await;
        assert_eq!(status, 200, "{body}");
        let staging = stack_of(&body, "staging");
        assert!(
            staging.starts_with("unknown: AccessDenied: User: arn:aws:iam::123456789012:user/argos is not auth"),
            "{staging}"
        );
        assert!(staging.chars().count() <= "unknown: ".len() + 80, "short: {staging}");
        assert_eq!(stack_of(&body, "sandbox"), staging);
    }
    assert_eq!(w.aws.count("DescribeStacks"), 1);
    server.abort();
}
