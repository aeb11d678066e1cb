//! `argos <env> hold|release` and `argos freeze|unfreeze` from a terminal: the same rules as
//! in chat ([`crate::holds`]), as the operating-system user, with the same replies, audit
//! records and announcements. The CLI checks no permissions: whoever runs it holds the
//! config and the credentials already.

use crate::address::Surface;
use crate::bot::messages;
use crate::bot::notices;
use crate::command::Command;
use crate::config::Config;
use crate::holds::{self, HoldProblem, HoldRequest};
use crate::people::People;
use crate::permissions::Identity;
use crate::store::{HoldOutcome, ReleaseOutcome, Store};

use super::job::{audit_refusal, open_store};
use super::{EXIT_FAILED, EXIT_USAGE};

/// Runs a hold, release, freeze or unfreeze; returns the exit code.
pub(crate) async fn run(config: &Config, cmd: &Command) -> i32 {
    let store = match open_store(config).await {
        Ok(s) => s,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let who = Identity::named(Surface::Cli, &user);
    let people = People::new(&config.settings.people);
    let channel = format!("cli:{}", crate::names::hostname());
    let typed = describe(cmd);
    let done = |store: &Store, outcome: &str, reply: String, ok: bool| {
        let entry = crate::store::AuditEntry::by(&who, &channel, &typed, outcome, None);
        if let Err(e) = store.audit(entry) {
            eprintln!("warning: cannot write the audit log: {e}");
        }
        if ok {
            println!("{reply}");
            0
        } else {
            eprintln!("error: {reply}");
            EXIT_USAGE
        }
    };
    match cmd {
        Command::Hold {
            env,
            reason,
            duration,
            warn,
        } => {
            let ask = HoldRequest {
                who: &who,
                channel: &channel,
                env: env.as_str(),
                reason,
                duration: *duration,
                warn: *warn,
            };
            match holds::take(&store, config, &people, &ask) {
                Err(HoldProblem::UnknownEnv(e)) => {
                    audit_refusal(config, &typed, &format!("refused: {e}")).await;
                    eprintln!("error: {e}");
                    EXIT_USAGE
                }
                Err(HoldProblem::TooLong { asked, max }) => done(
                    &store,
                    "refused: longer than holds.max",
                    messages::hold_too_long(asked, max),
                    false,
                ),
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
                Ok(Ok(HoldOutcome::Taken(h))) => {
                    notices::post_with(
                        &store,
                        config,
                        &h.env,
                        &messages::announced::hold_taken(&h),
                        &format!("hold-{}-start", h.id),
                    );
                    let outcome = format!("ok: hold #{} until {}", h.id, h.ends_at.to_rfc3339());
                    done(&store, &outcome, messages::hold_taken(&h), true)
                }
                Ok(Ok(HoldOutcome::Renewed(h))) => {
                    let outcome = format!("ok: hold #{} renewed until {}", h.id, h.ends_at.to_rfc3339());
                    done(&store, &outcome, messages::hold_renewed(&h), true)
                }
                Ok(Ok(HoldOutcome::HeldBy(h))) => done(
                    &store,
                    &format!("refused: held by {}", h.holder_name),
                    messages::held_by_other(&h),
                    false,
                ),
                Ok(Ok(HoldOutcome::Busy(job))) => done(
                    &store,
                    &format!("busy: job #{} running", job.id),
                    messages::hold_busy(env.as_str(), &job),
                    false,
                ),
            }
        }
        Command::Release { env, force } => {
            if let Err(e) = config.environment(env.as_str()) {
                audit_refusal(config, &typed, &format!("refused: {e}")).await;
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
            match holds::release(&store, &people, &who, env.as_str(), *force) {
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
                Ok(ReleaseOutcome::Released(h)) => {
                    let what = if h.person == holds::person_of(&people, &who) {
                        "released"
                    } else {
                        "forced release"
                    };
                    notices::post_with(
                        &store,
                        config,
                        &h.env,
                        &messages::announced::hold_ended(&h),
                        &format!("hold-{}-end", h.id),
                    );
                    done(
                        &store,
                        &format!("ok: hold #{} {what}", h.id),
                        messages::released(&h, &user),
                        true,
                    )
                }
                Ok(ReleaseOutcome::NotHeld) => done(&store, "ok: not held", messages::not_held(env.as_str()), true),
                Ok(ReleaseOutcome::NotYours(h)) => {
                    let reply =
                        messages::not_your_hold(&h).replace("`", "") + " (argos " + env.as_str() + " release --force)";
                    done(&store, &format!("refused: held by {}", h.holder_name), reply, false)
                }
            }
        }
        Command::Freeze { envs, duration, reason } => {
            let scope = match holds::selected(config, envs) {
                Ok(s) => s,
                Err(e) => {
                    audit_refusal(config, &typed, &format!("refused: {e}")).await;
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            match holds::freeze(&store, &people, &who, scope, *duration, reason) {
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
                Ok(f) => {
                    let id = f.id.unwrap_or(0);
                    for env in notices::covered(config, &f.envs) {
                        notices::post_with(
                            &store,
                            config,
                            &env,
                            &messages::announced::frozen(&f),
                            &format!("freeze-{id}-start"),
                        );
                    }
                    let outcome = format!("ok: freeze #{id} until {}", f.ends_at.to_rfc3339());
                    done(&store, &outcome, messages::frozen(&f), true)
                }
            }
        }
        Command::Unfreeze { envs } => {
            let scope = match holds::selected(config, envs) {
                Ok(s) => s,
                Err(e) => {
                    audit_refusal(config, &typed, &format!("refused: {e}")).await;
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            match store.unfreeze(&scope.unwrap_or_default(), &user) {
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
                Ok(ended) => {
                    for f in &ended {
                        let id = f.id.unwrap_or(0);
                        for env in notices::covered(config, &f.envs) {
                            notices::post_with(
                                &store,
                                config,
                                &env,
                                &messages::announced::freeze_ended(f),
                                &format!("freeze-{id}-end"),
                            );
                        }
                    }
                    let names: Vec<String> = ended.iter().map(|f| f.name.clone()).collect();
                    done(
                        &store,
                        &format!("ok: unfroze [{}]", names.join(", ")),
                        messages::unfrozen(&ended),
                        true,
                    )
                }
            }
        }
        other => {
            eprintln!("error: `{}` is not a hold or a freeze", describe(other));
            EXIT_USAGE
        }
    }
}

/// The command as the audit log records it.
fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Hold { env, warn, .. } => format!("{env} hold{}", if *warn { " --warn" } else { "" }),
        Command::Release { env, force } => format!("{env} release{}", if *force { " --force" } else { "" }),
        Command::Freeze { envs, .. } => format!("freeze {}", envs.describe()),
        Command::Unfreeze { envs } => format!("unfreeze {}", envs.describe()),
        _ => "command".into(),
    }
}
