//! chromedriver on a free loopback port and a headless Chromium session through it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use tokio::process::{Child, Command};

/// A free loopback port (bound and let go: the caller binds it again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn program(env: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/bootstrap as root (apt-get install chromium chromium-driver), or set {env}")
        })
}

/// chromedriver and one browser session; both end when this is dropped.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = program("ARGOS_CHROMEDRIVER", "chromedriver");
        let chromium = program("ARGOS_CHROMIUM", "chromium");
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // Without these, Chromium's own connections to the outside are refused by this
            // machine's closed network and it stalls (as root above all).
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1200,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from {}: {e}", driver_bin.display()),
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// The text of the element with this CSS selector.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(fantoccini::Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap(),
            Err(e) => {
                let url = self.client.current_url().await.ok();
                let page = self.client.source().await.unwrap_or_default();
                panic!("no {css} on {url:?}: {e}\n{page}")
            }
        }
    }

    /// Whether an element with this CSS selector is on the page.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(fantoccini::Locator::Css(css)).await.is_ok()
    }

    /// Saves a screenshot as `name` in the folder `ARGOS_WEB_SCREENSHOTS` names (relative to
    /// the repository), if it is set; checks it is a PNG either way.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "WebDriver returns a PNG");
        if let Ok(dir) = std::env::var("ARGOS_WEB_SCREENSHOTS") {
            let dir = crate::support::repo().join(dir);
            std::fs::write(dir.join(name), png).expect("write the screenshot");
        }
    }
}
