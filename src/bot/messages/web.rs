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
