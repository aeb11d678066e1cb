pub mod cloud;
pub mod config;
pub mod error;
pub mod names;
pub mod progress;
pub mod redact;
