//! Stack watcher benchmark (being written).
fn main() {}
