//! Platform adapters: the only code that knows a chat platform's types.

pub mod console;
pub mod discord;
pub mod slack;
