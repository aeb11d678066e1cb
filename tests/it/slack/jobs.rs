//! Jobs on Slack: one status message per job, posted once and edited with `chat.update` to the
//! end, the failure's root cause first, the full log as a file in the message's thread; edits
//! that keep to the update budget however chatty the jobs are; and a 429 that is waited out
//! with no final state lost.

use std::time::Duration;

use argos::bot::port::{Attachment, ChatPort, OutgoingMessage};
use argos::platform::slack::{text::mrkdwn, FOLLOWING_IN_CHANNEL};
use argos::store::JobState;

use super::world::*;
use crate::support::fake_aws::{Op, StackScript};
use crate::support::fake_slack::{texts_in, FakeSlackLimits, SlackUser, Upload, CHANNEL, OTHER_CHANNEL};

/// The one upload, completed, of `filename`.
#[track_caller]
fn the_upload(w: &World, filename: &str) -> Upload {
    let uploads = w.chat.with_state(|s| s.uploads.clone());
    let of: Vec<&Upload> = uploads.iter().filter(|u| u.filename == filename).collect();
    assert_eq!(of.len(), 1, "one upload of {filename}: {uploads:#?}");
    assert!(of[0].completed, "{:#?}", of[0]);
    of[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stack_update_posts_one_status_message_and_edits_it_to_the_end() {
    let w = world().await;
    w.aws.set_time_scale(20.0);
    let r = start_bot(w.project.config()).await;
    add_app(&w.aws, r.bot.engine());
    script_update(&w.aws, 10.0);

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging update");
    let status = w.chat.next_post().await;
    assert_eq!(status.channel, CHANNEL);
    assert!(
        status.text.starts_with("⏳ *staging · update* · job #1 · U0ADMIN · "),
        "{status:#?}"
    );
    assert_eq!((status.thread_ts.as_deref(), status.link_names), (None, false));
    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;

    let edits = updates_of(&w.chat, CHANNEL, &status.ts);
    assert_eq!(
        w.chat.with_state(|s| s.updates.len()),
        edits.len(),
        "only the status message is edited"
    );
    assert!(edits.len() >= 3, "progress shows as edits: {edits:#?}");
    assert!(
        edits
            .iter()
            .any(|e| e.all_text().contains("UPDATE_IN_PROGRESS ApiInstance")),
        "{edits:#?}"
    );
    assert!(
        edits.iter().any(|e| e.all_text().contains("▸ api.yml task ")),
        "the playbook shows"
    );
    let final_edit = edits.last().unwrap();
    assert!(
        final_edit
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("✅ *staging · update* · job #1 · U0ADMIN · done in ")),
        "{final_edit:#?}"
    );
    assert!(last.contains("updated argos-staging"), "{last}");
    assert!(
        last.lines()
            .any(|l| l.starts_with("• api: ") && l.contains(" task(s), ")),
        "the playbook's summary: {last}"
    );
    let stored = w.chat.message(CHANNEL, &status.ts).expect("stored");
    assert_eq!(stored.edits as usize, edits.len());
    assert!(stored.buttons().is_empty());

    // The full log, in the status message's thread, after the final edit.
    let job = r.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.status_message_id.as_deref(), Some(status.ts.as_str()));
    let log = std::fs::read(job.log_path.as_deref().expect("a log")).expect("the log file");
    let upload = the_upload(&w, "argos-job-1.log");
    assert_eq!(upload.bytes.as_deref(), Some(log.as_slice()), "the whole log");
    assert_eq!(upload.length, log.len());
    assert_eq!(
        (upload.channel.as_deref(), upload.thread_ts.as_deref()),
        (Some(CHANNEL), Some(status.ts.as_str()))
    );
    assert_eq!(upload.title.as_deref(), Some("argos-job-1.log"));
    let completed = w.chat.calls("files.completeUploadExternal");
    assert_eq!(completed.len(), 1);
    assert!(completed[0].at >= final_edit.at);
    assert_eq!(w.aws.count("ExecuteChangeSet"), 1);
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolled_back_update_leads_with_the_root_cause() {
    let w = world().await;
    w.aws.set_time_scale(20.0);
    let r = start_bot(w.project.config()).await;
    add_app(&w.aws, r.bot.engine());
    script_failed_update(&w.aws, 4.0);

    // Asked with /argos: the asker is told where to follow it, the job posts in the channel.
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::admin(), "staging update");
    let status = w
        .chat
        .expect_post(CHANNEL, "⏳ *staging · update* · job #1 · U0ADMIN")
        .await;
    assert_eq!(w.chat.wait_response(&slash).await.text, FOLLOWING_IN_CHANNEL);
    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;

    let cause = "❌ update rolled back: FrontInstance (AWS::EC2::Instance) UPDATE_FAILED: Resource handler returned message: \"The requested configuration is currently not supported.";
    let stored = w.chat.message(CHANNEL, &status.ts).unwrap();
    // The root cause is the first line, and so the notification text too.
    assert!(stored.text.starts_with(cause), "{}", stored.text);
    let blocks = texts_in(&stored.blocks).join("\n");
    let lines: Vec<&str> = blocks.lines().collect();
    assert!(lines[0].starts_with(cause), "{blocks}");
    assert!(
        lines[1].starts_with("*staging · update* · job #1 · U0ADMIN · failed after "),
        "{blocks}"
    );
    assert!(last.contains("UPDATE_ROLLBACK_COMPLETE"), "{last}");
    let job = r.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job
        .result
        .as_deref()
        .unwrap_or("")
        .starts_with("update rolled back: FrontInstance"));
    // No playbook ran, so there is no log to attach.
    assert!(w.chat.with_state(|s| s.uploads.is_empty()));
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_deploy_leads_with_the_failing_task_and_its_log_is_in_the_thread() {
    let w = world().await;
    // The sandbox playbook refuses a sandbox_dir that is not absolute: its first task fails.
    patch(&w.project, "    sandbox_dir: ", "    sandbox_dir: relative");
    let r = start_bot(w.project.config()).await;
    add_app(&w.aws, r.bot.engine());

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging deploy");
    let status = w
        .chat
        .expect_post(CHANNEL, "⏳ *staging · deploy* · job #1 · U0ADMIN")
        .await;
    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;

    let stored = w.chat.message(CHANNEL, &status.ts).unwrap();
    let cause = "❌ task 'Check sandbox_dir' failed on host argos-staging-api";
    assert!(stored.text.starts_with(cause), "{last}");
    assert!(
        stored.text.contains("sandbox_dir must be passed as an extra var"),
        "{last}"
    );
    let blocks = texts_in(&stored.blocks).join("\n");
    assert!(blocks.starts_with(cause), "{blocks}");
    assert!(
        blocks
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("*staging · deploy* · job #1 · U0ADMIN · failed after ")),
        "{blocks}"
    );
    let job = r.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    let log = std::fs::read(job.log_path.as_deref().expect("a log")).expect("the playbook's log");
    let upload = the_upload(&w, "argos-job-1.log");
    assert_eq!(upload.bytes.as_deref(), Some(log.as_slice()), "the whole log");
    assert!(upload.text().contains("Check sandbox_dir"), "{}", upload.text());
    assert_eq!(
        (upload.channel.as_deref(), upload.thread_ts.as_deref()),
        (Some(CHANNEL), Some(status.ts.as_str()))
    );
    clean_finish(&w.chat).await;
    r.stop().await;
}

/// A stack of `n` parameters whose deletion reports every `seconds`.
fn add_chatty_stack(w: &World, stack: &str, n: usize, seconds: f64) {
    let names: Vec<String> = (0..n).map(|i| format!("Param{i:02}")).collect();
    let resources: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "AWS::SSM::Parameter")).collect();
    w.aws.add_stack(stack, TINY_TEMPLATE, &[], &resources);
    w.aws.script_next_for(
        stack,
        Op::Delete,
        StackScript::delete_success(stack, &resources, &vec![seconds; n]),
    );
}

/// Status messages that would be edited every 20 ms (no per-message budget to speak of): only
/// the adapter's update budget holds them back.
const CHATTY: &str = "chat:
  edit_interval_ms: 20
  edit_burst: 1000
  edit_refill_secs: 1
  edits_per_second: 100
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chatty_jobs_keep_to_the_shared_update_budget() {
    let w = world_with(FakeSlackLimits::TEST, CHATTY, false).await;
    w.aws.set_time_scale(1.0);
    // Two jobs at once, each with an event every 50 ms for 4 s: they would edit 20 times a
    // second each; the workspace allows 10 updates per 2 s for both.
    add_chatty_stack(&w, "argos-staging", 40, 0.1);
    add_chatty_stack(&w, "argos-sandbox", 40, 0.1);
    let r = start_bot(w.project.config()).await;

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    w.chat
        .push_message(OTHER_CHANNEL, &SlackUser::admin(), "!argos sandbox decommission");
    let first = w.chat.next_post().await;
    let second = w.chat.next_post().await;
    let (staging, sandbox) = if first.channel == CHANNEL {
        (first, second)
    } else {
        (second, first)
    };
    assert!(staging.text.starts_with("⏳ *staging · decommission*"), "{staging:#?}");
    assert!(sandbox.text.starts_with("⏳ *sandbox · decommission*"), "{sandbox:#?}");
    let a = wait_finished(&w.chat, CHANNEL, &staging.ts).await;
    let b = wait_finished(&w.chat, OTHER_CHANNEL, &sandbox.ts).await;
    r.bot.idle().await;

    assert!(a.contains("decommissioned argos-staging"), "{a}");
    assert!(b.contains("decommissioned argos-sandbox"), "{b}");
    let calls = w.chat.calls("chat.update");
    // The budget was what held them back (else there would be far fewer)...
    assert!(calls.len() >= 20, "{} updates", calls.len());
    // ...and at no moment were there more than 10 in 2 s, by the fake's clock.
    for (i, c) in calls.iter().enumerate() {
        let within = calls[i..]
            .iter()
            .take_while(|d| d.at.duration_since(c.at) < Duration::from_secs(2))
            .count();
        assert!(within <= 10, "{within} updates within 2 s from call {i}");
    }
    let both = [
        updates_of(&w.chat, CHANNEL, &staging.ts).len(),
        updates_of(&w.chat, OTHER_CHANNEL, &sandbox.ts).len(),
    ];
    assert!(
        both.iter().all(|n| *n >= 5),
        "the budget is shared, not taken by one: {both:?}"
    );
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_is_waited_out_and_the_final_state_still_lands() {
    let w = world().await;
    w.aws.set_time_scale(1.0);
    add_chatty_stack(&w, "argos-staging", 8, 0.4);
    let r = start_bot(w.project.config()).await;

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    let status = w.chat.next_post().await;
    // Once the job is under way, Slack says 429 (another client on the token, say).
    wait_message(&w.chat, CHANNEL, &status.ts, "a first edit", |t| {
        t.contains("DELETE_IN_PROGRESS")
    })
    .await;
    w.chat.rate_limit_next("chat.update", 2);
    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;

    let calls = w.chat.calls("chat.update");
    let limited = calls.iter().position(|c| c.outcome == "ratelimited").expect("a 429");
    let retry = calls.get(limited + 1).expect("a call after the 429");
    let waited = retry.at.duration_since(calls[limited].at);
    assert!(
        waited >= Duration::from_secs(2),
        "Retry-After: 2 honoured, waited {waited:?}"
    );
    assert_eq!(retry.outcome, "ok");
    // The last state is on the message: the final render the job recorded, nothing older.
    assert!(last.contains("decommissioned argos-staging"), "{last}");
    let job = r.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    let stored = w.chat.message(CHANNEL, &status.ts).unwrap();
    assert_eq!(
        texts_in(&stored.blocks).join("\n"),
        mrkdwn(job.progress.as_deref().expect("the job's last status"))
    );
    assert!(calls[limited + 1..].iter().all(|c| c.outcome == "ok"));
    finish_with(&w.chat, 1).await;
    r.stop().await;
}

/// The adapter alone: edits of one message queued behind a 429 go out as one request with the
/// newest content once `Retry-After` has passed, and the final one's log still reaches the
/// thread although another edit's request carried its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_queued_behind_a_429_are_coalesced_and_the_log_still_lands() {
    let w = world().await;
    let r = start_bot(w.project.config()).await;
    let port = r.port.clone();
    let ts = port
        .send(CHANNEL, OutgoingMessage::text("⏳ job"))
        .await
        .expect("posted");
    w.chat.next_post().await;
    let log = w.project.dir.path().join("job.log");
    std::fs::write(&log, "the whole log\n").unwrap();

    w.chat.rate_limit_next("chat.update", 1);
    let later = |ms: u64, msg: OutgoingMessage| {
        let (port, ts) = (port.clone(), ts.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            port.edit(CHANNEL, &ts, msg).await
        }
    };
    let done = OutgoingMessage {
        attachment: Some(Attachment {
            filename: "argos-job-1.log".into(),
            path: log.clone(),
        }),
        ..OutgoingMessage::text("✅ done")
    };
    let (a, b, c) = tokio::join!(
        later(0, OutgoingMessage::text("⏳ step 1")),
        later(200, OutgoingMessage::text("⏳ step 2")),
        later(300, done),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");

    let calls = w.chat.calls("chat.update");
    let texts: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.outcome.as_str(), c.params["text"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        texts,
        [("ratelimited", "⏳ step 1"), ("ok", "✅ done")],
        "one request for three edits"
    );
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_secs(1));
    assert!(port.coalesced.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert_eq!(w.chat.message(CHANNEL, &ts).unwrap().text, "✅ done");
    let upload = the_upload(&w, "argos-job-1.log");
    assert_eq!(upload.text(), "the whole log\n");
    assert_eq!(upload.thread_ts.as_deref(), Some(ts.as_str()));
    finish_with(&w.chat, 1).await;
    r.stop().await;
}

/// The elapsed time a running status message's first line shows (`· 12s`, `· 1m 05s`).
fn elapsed_shown(first_line: &str) -> Duration {
    let last = first_line.rsplit(" · ").next().unwrap_or("");
    let mut secs = 0;
    for part in last.split_whitespace() {
        let (n, unit) = part.split_at(part.len() - 1);
        let n: u64 = n
            .parse()
            .unwrap_or_else(|_| panic!("no elapsed time in {first_line:?}"));
        secs += match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => panic!("no elapsed time in {first_line:?}"),
        };
    }
    Duration::from_secs(secs)
}

/// An edit retried after a 429 is rendered anew when it goes out: its elapsed time is that
/// of the moment it is sent (2 s later), not the one of the request Slack refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_retried_after_a_429_shows_the_elapsed_time_it_is_sent_at() {
    let w = world().await;
    w.aws.set_time_scale(1.0);
    add_chatty_stack(&w, "argos-staging", 10, 0.8);
    let r = start_bot(w.project.config()).await;

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    let status = w.chat.next_post().await;
    wait_message(&w.chat, CHANNEL, &status.ts, "a first edit", |t| {
        t.contains("DELETE_IN_PROGRESS")
    })
    .await;
    w.chat.rate_limit_next("chat.update", 2);
    wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;

    let calls = w.chat.calls("chat.update");
    let limited = calls.iter().position(|c| c.outcome == "ratelimited").expect("a 429");
    let (refused, retry) = (&calls[limited], &calls[limited + 1]);
    assert_eq!(retry.outcome, "ok");
    assert!(retry.at.duration_since(refused.at) >= Duration::from_secs(2));
    let first_line = |c: &crate::support::fake_slack::ApiCall| c.params["text"].as_str().unwrap_or("").to_string();
    let (before, after) = (first_line(refused), first_line(retry));
    assert!(after.starts_with("⏳"), "the retry is not the final edit: {after}");
    assert!(
        elapsed_shown(&after) >= elapsed_shown(&before) + Duration::from_secs(2),
        "the retried edit shows the time it was sent at: refused {before:?}, sent {after:?}"
    );
    finish_with(&w.chat, 1).await;
    r.stop().await;
}
