//! Platform adapters: the only code that knows a chat platform's types. Which platforms there
//! are is [`ChatPlatform`] (on the ground floor, with the channel addresses that name them);
//! adding one fails to compile until [`pacing`] handles it.

pub mod channel_window;
pub mod console;
pub mod discord;
pub mod pacing;
pub mod slack;

pub use crate::address::ChatPlatform;
