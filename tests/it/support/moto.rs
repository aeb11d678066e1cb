//! Starts the pinned `moto_server` from the project's virtualenv on a free loopback port, for
//! one test, and stops it when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub struct Moto {
    pub url: String,
    port: u16,
    _child: Child,
}

fn venv_bin(name: &str) -> PathBuf {
    super::repo().join(".venv/bin").join(name)
}

impl Moto {
    pub async fn start() -> Moto {
        Self::start_with_env(&[]).await
    }

    /// Like [`Moto::start`], with extra environment variables for the server (moto's own
    /// settings, such as `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub async fn start_with_env(vars: &[(&str, &str)]) -> Moto {
        let bin = venv_bin("moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/bootstrap (the test command does)",
            bin.display()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            port,
            _child: child,
        };
        for _ in 0..300 {
            if moto.get("/moto-api/data.json").await.is_some() {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on port {port}");
    }

    /// A moto API document (`/moto-api/data.json`), parsed.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let raw = self.get(path).await.expect("moto answers");
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(body).expect("moto's JSON")
    }

    /// A bare HTTP GET on loopback; `None` while the server is not up.
    async fn get(&self, path: &str) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        body.starts_with("HTTP/1.1 200").then_some(body)
    }
}
