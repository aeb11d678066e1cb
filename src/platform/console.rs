//! The console adapter: `argos console --user NAME` reads commands from stdin and prints the
//! bot's messages. On a terminal the newest status message is redrawn in place; when piped,
//! each edit prints only the lines it adds, so a log stays readable.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::address::ChannelAddress;
use crate::bot::messages;
use crate::bot::port::{addressed_text, ChatEvent, ChatPort, OutgoingMessage, PortResult};
use crate::bot::Bot;
use crate::permissions::Identity;

/// The channel of a console user: a message for a job that user started (an approval decided
/// in another console, a result) reaches that user's console and no other, also after a
/// restart.
pub fn channel(user: &str) -> String {
    ChannelAddress::console(user).key()
}

struct Screen {
    terminal: bool,
    next_id: u64,
    /// The message printed last and how many lines it took (redrawn in place on a terminal).
    last: Option<(String, usize)>,
    /// Piped mode: the lines already printed per message.
    printed: HashMap<String, HashSet<String>>,
}

/// Prints to stdout. One per process.
pub struct ConsolePort {
    screen: Mutex<Screen>,
    /// `console:<user>`: what the outbox holds for this console.
    address: ChannelAddress,
    /// The address's key: the channel of this console's events and jobs.
    channel: String,
}

impl ConsolePort {
    pub fn new(terminal: bool, user: &str) -> ConsolePort {
        ConsolePort {
            screen: Mutex::new(Screen {
                terminal,
                next_id: 1,
                last: None,
                printed: HashMap::new(),
            }),
            address: ChannelAddress::console(user),
            channel: channel(user),
        }
    }

    /// Prints a reply (not a status message).
    pub fn print_reply(&self, text: &str) {
        self.print_replies([text]);
    }

    /// Prints replies in one write: a reader waiting for them gets them whole, in one wake-up.
    pub fn print_replies<'a>(&self, texts: impl IntoIterator<Item = &'a str>) {
        let mut s = self.screen.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = String::new();
        for text in texts {
            all.push_str(&plain(text));
            all.push('\n');
        }
        if all.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(all.as_bytes());
        let _ = out.flush();
        s.last = None;
    }

    fn show(&self, id: &str, msg: &OutgoingMessage, is_edit: bool) {
        let mut s = self.screen.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = plain(&msg.text);
        if let Some(a) = &msg.attachment {
            text.push_str(&format!("\nfull log: {}", crate::names::shown_path(&a.path)));
        }
        let mut out = std::io::stdout().lock();
        if s.terminal {
            if let (true, Some((last_id, lines))) = (is_edit, &s.last) {
                if last_id == id {
                    // Up to the start of the previous rendering, clear to the end, redraw.
                    let _ = write!(out, "\x1b[{lines}A\r\x1b[J");
                }
            }
            let _ = writeln!(out, "{text}");
            s.last = Some((id.to_string(), text.lines().count().max(1)));
        } else {
            let seen = s.printed.entry(id.to_string()).or_default();
            for line in text.lines() {
                if seen.insert(line.to_string()) {
                    let _ = writeln!(out, "[{id}] {line}");
                }
            }
        }
        let _ = out.flush();
    }
}

/// Chat markup reads badly on a terminal: drop bold markers and code fences.
fn plain(text: &str) -> String {
    text.replace("**", "")
        .lines()
        .filter(|l| l.trim() != "```")
        .collect::<Vec<_>>()
        .join("\n")
        .replace('`', "")
}

impl ChatPort for ConsolePort {
    fn platform(&self) -> crate::address::ChatPlatform {
        crate::address::ChatPlatform::Console
    }

    fn pacing(&self, chat: &crate::config::ChatSettings) -> crate::bot::pace::Pacing {
        crate::platform::pacing::of(crate::address::ChatPlatform::Console, chat)
    }

    fn serves(&self, channel: &str) -> bool {
        channel == self.channel
    }

    fn own_channel(&self) -> Option<ChannelAddress> {
        Some(self.address.clone())
    }

    fn send<'a>(&'a self, _channel: &'a str, msg: OutgoingMessage) -> BoxFuture<'a, PortResult<String>> {
        Box::pin(async move {
            let id = {
                let mut s = self.screen.lock().unwrap_or_else(|p| p.into_inner());
                let id = format!("m{}", s.next_id);
                s.next_id += 1;
                id
            };
            self.show(&id, &msg, false);
            Ok(id)
        })
    }

    fn edit<'a>(
        &'a self,
        _channel: &'a str,
        message_id: &'a str,
        msg: OutgoingMessage,
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(async move {
            self.show(message_id, &msg, true);
            Ok(())
        })
    }
}

/// Runs the console until end of input, then waits for the jobs it started.
pub async fn run(bot: Bot, user: String) {
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let port = Arc::new(ConsolePort::new(terminal, &user));
    bot.add_port(port.clone());
    let resumed = bot.resume_unfinished().await;
    let schedules = tokio::spawn(crate::bot::announce::run_all(bot.clone()));
    if !resumed.is_empty() {
        port.print_reply(&format!("resumed job(s) {resumed:?} from before the restart"));
    }
    let prefix = bot.engine().config.settings.chat.prefix.clone();
    let identity = Identity {
        platform: crate::address::Surface::CONSOLE,
        user_id: user.clone(),
        display_name: user.clone(),
        platform_roles: vec![],
    };
    if terminal {
        port.print_reply(&format!("Argos console as {user}. Type `help`; ctrl-d to leave."));
    }
    // Lines are read and answered on a thread of its own, which drives each burst's handling
    // itself (`Handle::block_on`): a typed command costs one thread wake-up, not a hand-over
    // from a reader thread to the runtime as well. Jobs and timers run on the runtime.
    let (finished, input_done) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Handle::current();
    let session = Session {
        bot: bot.clone(),
        port: port.clone(),
        identity,
        prefix,
        terminal,
    };
    let spawned = std::thread::Builder::new().name("argos-console".into()).spawn(move || {
        session.answer_stdin(&runtime);
        let _ = finished.send(());
    });
    if let Err(e) = spawned {
        port.print_reply(&format!("cannot start the console's reader ({e}); leaving"));
    } else {
        tokio::select! {
            _ = input_done => {}
            _ = tokio::signal::ctrl_c() => {
                // Interrupted: wait briefly, then leave running jobs recorded as running (they
                // resume at the next start) rather than waiting for them indefinitely.
                let grace = std::time::Duration::from_secs(bot.engine().config.settings.chat.shutdown_grace_secs);
                let left = bot.shutdown(grace).await;
                if !left.is_empty() {
                    port.print_reply(&format!("stopped with job(s) {left:?} still running; they resume at the next start"));
                }
                schedules.abort();
                return;
            }
        }
    }
    bot.idle().await;
    bot.retire();
    schedules.abort();
}

/// What the console's reader thread needs to answer the user.
struct Session {
    bot: Bot,
    port: Arc<ConsolePort>,
    identity: Identity,
    prefix: String,
    terminal: bool,
}

impl Session {
    /// Reads stdin in bursts and answers each, until the end of input.
    fn answer_stdin(&self, runtime: &tokio::runtime::Handle) {
        // Our own buffer, to see whether another whole line has arrived without waiting.
        let mut input = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
        loop {
            if self.terminal {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(b"argos> ");
                let _ = out.flush();
            }
            let (lines, end) = read_burst(&mut input);
            if !lines.is_empty() {
                let replies = runtime.block_on(self.answer(lines));
                self.port.print_replies(replies.iter().map(String::as_str));
            }
            match end {
                None => {}
                Some(Ok(())) => return,
                Some(Err(e)) => {
                    self.port.print_reply(&format!("cannot read the input ({e}); leaving"));
                    return;
                }
            }
        }
    }

    /// A burst: every line that had arrived (one when typed, many when piped in), handled in
    /// order; their read-only audit records go in one transaction before the replies.
    async fn answer(&self, lines: Vec<Vec<u8>>) -> Vec<String> {
        let mut events = Vec::with_capacity(lines.len());
        // Per answered line: its reply already (a line that is not UTF-8), or `None` for the
        // next of the bot's answers.
        let mut replies: Vec<Option<String>> = Vec::with_capacity(lines.len());
        for buf in &lines {
            // Bytes, decoded per line: one bad line is answered, not taken for the end of input.
            let Ok(line) = std::str::from_utf8(buf) else {
                replies.push(Some(messages::not_utf8()));
                continue;
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The prefix is optional on the console.
            let text = addressed_text(line, &self.prefix, None).unwrap_or(line).to_string();
            events.push(ChatEvent {
                identity: self.identity.clone(),
                channel: self.port.channel.clone(),
                text,
            });
            replies.push(None);
        }
        let mut answers = self.bot.handle_burst(events).await.into_iter();
        for slot in replies.iter_mut().filter(|r| r.is_none()) {
            *slot = answers.next().flatten();
        }
        replies.into_iter().flatten().collect()
    }
}

/// Lines per burst at most: bounds the wait for the first reply of a long burst.
const BURST: usize = 256;

/// The next lines of `input` (with their newline): at least one, and every further complete
/// line already buffered, up to [`BURST`]. The second value is set when the input ended
/// (`Ok`) or failed after these lines.
fn read_burst<R: std::io::Read>(input: &mut std::io::BufReader<R>) -> (Vec<Vec<u8>>, Option<std::io::Result<()>>) {
    use std::io::BufRead;
    let mut burst = Vec::new();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return (burst, Some(Ok(()))),
            Ok(_) => burst.push(line),
            Err(e) => return (burst, Some(Err(e))),
        }
        // Stop at the end of what has arrived: the next read would wait for more.
        if burst.len() >= BURST || !input.buffer().contains(&b'\n') {
            return (burst, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_what_has_arrived_and_ends_at_a_partial_line() {
        let mut input = std::io::BufReader::new(&b"one\ntwo\nthr"[..]);
        let (lines, end) = read_burst(&mut input);
        assert_eq!(lines, [b"one\n".to_vec(), b"two\n".to_vec()]);
        assert!(end.is_none(), "the partial line waits for the next read");
        let (lines, end) = read_burst(&mut input);
        assert_eq!(lines, [b"thr".to_vec()], "the last line, without a newline");
        assert!(end.is_none());
        let (lines, end) = read_burst(&mut input);
        assert!(lines.is_empty());
        assert!(matches!(end, Some(Ok(()))), "then the end of input");
    }

    #[test]
    fn a_burst_holds_at_most_burst_lines() {
        let text = "x\n".repeat(BURST + 10);
        let mut input = std::io::BufReader::with_capacity(64 * 1024, text.as_bytes());
        assert_eq!(read_burst(&mut input).0.len(), BURST);
        assert_eq!(read_burst(&mut input).0.len(), 10);
    }
}
