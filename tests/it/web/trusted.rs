//! Sign-in by an authenticating proxy's header (`web.trusted_header`): believed from the
//! addresses in `web.trusted_proxies` only, mapped to a person through `people:`, who sees only
//! what they may `status`; the same header from another address is as if it were not there,
//! and a name nobody is listed under is refused. The tests reach the page from 127.0.0.1 (the
//! trusted proxy) and from 127.0.0.2 (anyone else on the machine).
use crate::support;

use support::world::{Console, World};

use super::stacks::{get, session};

const CONFIG: &str = r#"people:
  carol: { console: cwong }
permissions:
  roles:
    admins: { console_users: [alice] }
    viewers: { people: [carol] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: viewers
      environments: [sandbox]
      actions: [status]
web:
  public_url: "http://127.0.0.1:9"
  trusted_header: X-Forwarded-User
  trusted_proxies: ["127.0.0.1/32", "10.20.0.0/16"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_header_signs_a_person_in_and_nobody_elses_does() {
    let w = World::builder().config(CONFIG).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let port = addr.port();
    let carol = [("X-Forwarded-User", "carol")];

    // From the proxy: carol, who may see sandbox only.
    let (status, body) = get(port, "/", "127.0.0.1", &carol).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Signed in as <span id=\"who\">carol</span>"), "{body}");
    assert!(
        body.contains("id=\"env-sandbox\"") && !body.contains("id=\"env-staging\""),
        "{body}"
    );
    assert_eq!(get(port, "/envs/sandbox", "127.0.0.1", &carol).await.0, 200);
    assert_eq!(get(port, "/envs/staging", "127.0.0.1", &carol).await.0, 403);

    // The same header from another address is as if it were not there.
    let (status, body) = get(port, "/", "127.0.0.2", &carol).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("You are not signed in."), "{body}");
    // ... so a session cookie decides: alice's, whatever the header claims.
    let alice = format!("argos_session={}", session(port, bot.store(), "alice").await);
    let (status, body) = get(
        port,
        "/",
        "127.0.0.2",
        &[("X-Forwarded-User", "carol"), ("Cookie", &alice)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Signed in as <span id=\"who\">alice</span>"), "{body}");
    assert!(body.contains("id=\"env-staging\""), "{body}");

    // A name nobody is listed under, from the proxy: refused, and no cookie rescues it.
    let (status, body) = get(
        port,
        "/",
        "127.0.0.1",
        &[("X-Forwarded-User", "mallory"), ("Cookie", &alice)],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Argos does not know the person your proxy signed in (the X-Forwarded-User header must be a name listed under people: in the config)."),
        "{body}"
    );
    // A console name is not a person's name: carol is known as cwong on the console only.
    assert_eq!(
        get(port, "/", "127.0.0.1", &[("X-Forwarded-User", "cwong")]).await.0,
        403
    );
    // Without the header, the proxy's own requests need a session like anyone's.
    assert_eq!(get(port, "/", "127.0.0.1", &[]).await.0, 401);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_header_the_header_is_ignored_from_anywhere() {
    let config = CONFIG
        .replace("  trusted_header: X-Forwarded-User\n", "")
        .replace("  trusted_proxies: [\"127.0.0.1/32\", \"10.20.0.0/16\"]\n", "");
    let w = World::builder().config(&config).build().await;
    let Console { bot, .. } = Console::on(&w.project).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.unwrap();
    let (status, _) = get(addr.port(), "/", "127.0.0.1", &[("X-Forwarded-User", "carol")]).await;
    assert_eq!(status, 401, "off by default");
    server.abort();
}

#[test]
fn the_config_refuses_a_header_without_proxies_and_bad_proxies_naming_the_key() {
    let load = |web: &str| {
        let project = support::TestProject::new("http://127.0.0.1:9", &format!("web:\n{web}"));
        argos::config::Config::load(&project.config_path)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = load("  trusted_header: X-Forwarded-User\n");
    assert!(
        e.contains("web.trusted_proxies") && e.contains("is required when web.trusted_header is set"),
        "{e}"
    );
    let e = load("  trusted_header: X-Forwarded-User\n  trusted_proxies: [\"10.0.0.0/33\"]\n");
    assert!(
        e.contains("web.trusted_proxies") && e.contains("'10.0.0.0/33': the prefix length must be 0 to 32"),
        "{e}"
    );
    let e = load("  trusted_header: X-Forwarded-User\n  trusted_proxies: [proxy.internal]\n");
    assert!(
        e.contains("web.trusted_proxies") && e.contains("'proxy.internal' is not an IP address or network"),
        "{e}"
    );
    let e = load("  trusted_header: \"X Forwarded User\"\n  trusted_proxies: [127.0.0.1]\n");
    assert!(
        e.contains("web.trusted_header") && e.contains("not an HTTP header name"),
        "{e}"
    );
    let e = load("  trusted_proxies: [127.0.0.1]\n");
    assert!(
        e.contains("web.trusted_proxies") && e.contains("has no effect without web.trusted_header"),
        "{e}"
    );
    let e = load("  stack_status_secs: 0\n");
    assert!(
        e.contains("web.stack_status_secs") && e.contains("must be 1 to 3600"),
        "{e}"
    );
}
