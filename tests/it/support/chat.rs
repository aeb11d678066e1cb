//! A chat port that records what the bot posts and edits, for bot tests that need no platform.

use std::sync::{Arc, Mutex};

use argos::bot::port::{ChatPort, OutgoingMessage, PortResult};
use futures_util::future::BoxFuture;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Sent {
        channel: String,
        id: String,
        text: String,
    },
    Edited {
        channel: String,
        id: String,
        text: String,
        attachment: Option<String>,
    },
}

#[derive(Default)]
pub struct RecordingPort {
    pub log: Mutex<Vec<Posted>>,
    next: Mutex<u64>,
}

impl RecordingPort {
    pub fn new() -> Arc<RecordingPort> {
        Arc::new(RecordingPort::default())
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.log.lock().unwrap().clone()
    }

    /// The latest text of a message.
    pub fn text_of(&self, id: &str) -> Option<String> {
        self.posted().into_iter().rev().find_map(|p| match p {
            Posted::Sent { id: i, text, .. } | Posted::Edited { id: i, text, .. } if i == id => Some(text),
            _ => None,
        })
    }
}

impl ChatPort for RecordingPort {
    fn platform(&self) -> argos::address::ChatPlatform {
        argos::address::ChatPlatform::Console
    }

    fn send<'a>(&'a self, channel: &'a str, msg: OutgoingMessage) -> BoxFuture<'a, PortResult<String>> {
        Box::pin(async move {
            let id = {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                format!("msg-{n}")
            };
            self.log.lock().unwrap().push(Posted::Sent {
                channel: channel.into(),
                id: id.clone(),
                text: msg.text,
            });
            Ok(id)
        })
    }

    fn edit<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        msg: OutgoingMessage,
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(async move {
            self.log.lock().unwrap().push(Posted::Edited {
                channel: channel.into(),
                id: message_id.into(),
                text: msg.text,
                attachment: msg.attachment.map(|a| a.filename),
            });
            Ok(())
        })
    }
}
