//! The web page in a real browser: headless Chromium driven through chromedriver (WebDriver,
//! the fantoccini client), against a bot serving the page on a loopback port. A person signs in
//! with the link `web` gives them, sees the overview, opens a running job and watches its log
//! grow; a page is refused without a session, with a used or expired link, and for an
//! environment the person may not see. Chromium and chromedriver come from `scripts/bootstrap`.
//! `command.rs` checks `web` itself and `listing.rs` the other pages, over plain HTTP.
//!
//! `ARGOS_WEB_SCREENSHOTS=docs` writes the overview and job page screenshots to `docs/`.

mod browser;
mod command;
mod figures;
mod listing;
mod pages;
mod private;
mod stacks;
mod trusted;
