//! The replies about the web page: the sign-in link, and why there is none.

/// `web`: the sign-in link (valid once, for `minutes`).
pub fn web_link(url: &str, minutes: u64) -> String {
    format!("🔗 Your sign-in link for the Argos page (works once, for {minutes} min; don't share it): {url}")
}

/// `web` without `web.public_url` in the config.
pub fn web_not_configured() -> String {
    "The web page is not configured: an admin sets web.public_url in config/argos.yaml (and health.listen serves it)."
        .into()
}

/// The line a status message ends with when the page is configured: where its job is.
pub fn job_page_link(public_url: &str, job: u64) -> String {
    format!("🔗 {public_url}/jobs/{job}")
}

/// What `web` answers privately, as the public line that says where it went names it.
pub const SIGN_IN_LINK: &str = "a sign-in link";

/// The public line when a private answer went by direct message (`what`: "a sign-in link").
pub fn sent_by_direct_message(what: &str) -> String {
    format!("📬 I sent you {what} in a direct message.")
}

/// The public line when a private answer could not be delivered: why, and never the answer.
pub fn private_reply_failed(what: &str, cause: &str) -> String {
    format!("❌ I could not send you {what} privately: {cause}. Nothing was posted here.")
}

/// Why Discord refused a direct message (error 50007: the person does not accept direct
/// messages from this server's members, or has blocked the bot), and what to do instead.
pub fn direct_messages_refused() -> String {
    "Discord refused the direct message (you do not accept direct messages from this server's members); allow them in the server's privacy settings, or use the slash command `/argos web`, whose answer only you can see".into()
}
