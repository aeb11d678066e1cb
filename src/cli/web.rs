//! `argos web` on the CLI: a sign-in link for the read-only web page, printed on the terminal
//! (which only its user reads), for the operating-system user (`$USER`, as every CLI command
//! goes by). The page then shows the environments that person may `status`. As in chat, the
//! command is audited, the token never: the store keeps its hash.

use super::job::{audit_refusal, open_store};
use super::{EXIT_FAILED, EXIT_USAGE};
use crate::address::Surface;
use crate::bot::messages;
use crate::config::Config;
use crate::permissions::{Identity, Permissions};
use crate::store::AuditEntry;

pub(crate) async fn run(config: &Config) -> i32 {
    let web = &config.settings.web;
    let Some(base) = web.public_url.clone() else {
        audit_refusal(config, "web", "refused: web.public_url is not set").await;
        eprintln!("error: {}", messages::web_not_configured());
        return EXIT_USAGE;
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let who = Identity::named(Surface::Cli, &user);
    let perms = Permissions::new(
        config.settings.permissions.clone(),
        crate::people::People::new(&config.settings.people),
    );
    if !perms.is_known(&who) {
        audit_refusal(config, "web", "denied: no role").await;
        eprintln!("error: {}", messages::denied_unknown_user());
        return EXIT_USAGE;
    }
    let store = match open_store(config).await {
        Ok(s) => s,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let token = match crate::store::new_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let valid_ms = web.link_minutes * 60_000;
    let channel = format!("cli:{}", crate::names::hostname());
    let made = {
        let (token, who) = (token.clone(), who.clone());
        tokio::task::spawn_blocking(move || {
            store.create_sign_in_link(&token, &who, valid_ms)?;
            store.audit(AuditEntry::by(&who, &channel, "web", "ok: sign-in link sent", None))
        })
        .await
    };
    match made {
        Ok(Ok(_)) => {
            println!(
                "{}",
                messages::web_link(&format!("{base}/login/{token}"), web.link_minutes)
            );
            0
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}
