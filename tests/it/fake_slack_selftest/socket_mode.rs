//! Socket Mode: envelopes and acks, reconnects, waiting envelopes, single-use tickets, the ack check.
use super::*;

// Socket Mode

#[tokio::test]
async fn socket_mode_delivers_envelopes_and_records_acks() {
    let fake = FakeSlack::start_with(FakeSlackLimits::UNLIMITED).await;
    fake.set_echo_own_messages(false);
    let mut bot = Bot::start(&fake, 2).await;
    fake.wait_connections(2).await;
    assert_eq!(fake.connections_opened(), 2);
    assert_eq!(bot.hellos(2).await, vec![1, 2], "num_connections");

    // A message, then another: each envelope to one connection, in turn.
    let deployer = SlackUser::deployer();
    let first = fake.push_message(CHANNEL, &deployer, "status staging");
    let p = bot.next_push().await;
    let m = message_event(&p);
    assert_eq!(m.origin.channel.as_ref().map(|c| c.0.as_str()), Some(CHANNEL));
    assert_eq!(m.origin.channel_type.as_ref().map(|c| c.0.as_str()), Some("channel"));
    assert_eq!(m.sender.user.as_ref().map(|u| u.0.as_str()), Some("U0DEPLOY"));
    assert_eq!(
        m.content.as_ref().and_then(|c| c.text.as_deref()),
        Some("status staging")
    );
    assert_eq!(Some(m.origin.ts.0.clone()), fake.ts_of(&first));
    assert_eq!((p.team_id.0.as_str(), p.api_app_id.0.as_str()), (TEAM_ID, APP_ID));
    let ack = fake.wait_acked(&first).await;
    assert!(ack.payload.is_none() && ack.latency.expect("latency") < ACK_DEADLINE);
    // When the ack came is recorded after the envelope was pushed (the benchmarks time acks by it).
    let pushed = fake.with_state(|s| s.attempts(&first)[0].pushed);
    assert!(ack.at >= pushed, "the ack is timed before its envelope");
    let second = fake.push_message(CHANNEL, &deployer, "again");
    bot.next_push().await;
    fake.wait_acked(&second).await;
    fake.with_state(|s| {
        let (a, b) = (s.attempts(&first)[0].connection, s.attempts(&second)[0].connection);
        assert!(a.is_some() && b.is_some() && a != b, "round-robin: {a:?} then {b:?}");
    });

    // A direct message.
    let admin = SlackUser::admin();
    let direct = fake.push_message(&admin.dm(), &admin, "help");
    let p2 = bot.next_push().await;
    let dm = message_event(&p2);
    assert_eq!(dm.origin.channel_type.as_ref().map(|c| c.0.as_str()), Some("im"));
    assert_eq!(dm.origin.channel.as_ref().map(|c| c.0.clone()), Some(admin.dm()));
    fake.wait_acked(&direct).await;

    // A mention: a `message` and an `app_mention` event for the same message.
    let (as_message, as_mention) = fake.push_mention(CHANNEL, &SlackUser::admin(), "deploy staging");
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let p = bot.next_push().await;
        match &p.event {
            SlackEventCallbackBody::Message(m) => {
                let text = m.content.as_ref().and_then(|c| c.text.clone()).unwrap_or_default();
                assert_eq!(text, format!("<@{BOT_USER_ID}> deploy staging"));
                kinds.push(("message", m.origin.ts.0.clone(), p.event_id.0.clone()));
            }
            SlackEventCallbackBody::AppMention(m) => {
                assert_eq!(m.user.0, "U0ADMIN");
                assert_eq!(m.channel.0, CHANNEL);
                assert!(m
                    .content
                    .text
                    .as_deref()
                    .is_some_and(|t| t.starts_with("<@U0ARGOSBOT>")));
                kinds.push(("app_mention", m.origin.ts.0.clone(), p.event_id.0.clone()));
            }
            other => panic!("expected a message or app_mention, got {other:?}"),
        }
    }
    kinds.sort();
    assert_eq!((kinds[0].0, kinds[1].0), ("app_mention", "message"));
    assert_eq!(kinds[0].1, kinds[1].1, "same ts");
    assert_ne!(kinds[0].2, kinds[1].2, "different event ids");
    fake.wait_acked(&as_message).await;
    fake.wait_acked(&as_mention).await;

    // A slash command: the ack carries the command's immediate answer; then the response_url.
    let slash = fake.push_slash(CHANNEL, &SlackUser::admin(), "deploy staging");
    let command = match bot.next().await {
        Got::Command(c) => *c,
        other => panic!("expected a command, got {other:?}"),
    };
    assert_eq!(command.command.0, COMMAND);
    assert_eq!(command.text.as_deref(), Some("deploy staging"));
    assert_eq!(
        (command.user_id.0.as_str(), command.channel_id.0.as_str()),
        ("U0ADMIN", CHANNEL)
    );
    let ack = fake.wait_acked(&slash).await;
    assert_eq!(
        ack.payload.as_ref().map(|p| p["text"].clone()),
        Some(json!("on it: deploy staging"))
    );
    let client = client(&fake);
    client
        .respond_to_event(
            &command.response_url,
            &SlackApiPostWebhookMessageRequest::new(SlackMessageContent::new().with_text("Deployed.".into())),
        )
        .await
        .expect("respond_to_event");
    let r = fake.wait_response(&slash).await;
    assert_eq!((r.text.as_str(), r.channel.as_str()), ("Deployed.", CHANNEL));
    assert!(!r.replace_original && r.response_type.is_none());

    // A button click on a message the bot posted, answered through its response_url.
    let token = bot_token();
    let posted = client
        .open_session(&token)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new()
                .with_text("Deploy staging?".into())
                .with_blocks(approval_blocks()),
        ))
        .await
        .expect("post");
    let click = fake.push_button(CHANNEL, &deployer, &posted.ts.0, "approve", "job-1");
    let actions = match bot.next().await {
        Got::Interaction(i) => match *i {
            SlackInteractionEvent::BlockActions(a) => a,
            other => panic!("expected block_actions, got {other:?}"),
        },
        other => panic!("expected block_actions, got {other:?}"),
    };
    let action = &actions.actions.as_ref().expect("actions")[0];
    assert_eq!(
        (action.action_id.0.as_str(), action.value.as_deref()),
        ("approve", Some("job-1"))
    );
    assert_eq!(action.block_id.as_ref().map(|b| b.0.as_str()), Some("decide"));
    assert_eq!(actions.user.as_ref().map(|u| u.id.0.as_str()), Some("U0DEPLOY"));
    assert_eq!(actions.channel.as_ref().map(|c| c.id.0.as_str()), Some(CHANNEL));
    match &actions.container {
        SlackInteractionActionContainer::Message(c) => assert_eq!(c.message_ts, posted.ts),
        other => panic!("expected a message container, got {other:?}"),
    }
    let clicked = actions.message.as_ref().expect("the clicked message");
    assert_eq!(clicked.origin.ts, posted.ts);
    assert_eq!(clicked.content.blocks.as_ref().map(Vec::len), Some(2));
    fake.wait_acked(&click).await;
    client
        .respond_to_event(
            actions.response_url.as_ref().expect("response_url"),
            &SlackApiPostWebhookMessageRequest::new(SlackMessageContent::new().with_text("Approved by bob".into()))
                .with_replace_original(true),
        )
        .await
        .expect("respond_to_event");
    fake.wait_response(&click).await;
    let m = fake.message(CHANNEL, &posted.ts.0).expect("stored");
    assert_eq!((m.text.as_str(), m.buttons().len(), m.edits), ("Approved by bob", 0, 1));

    // A redelivery: same envelope id and event, retry_attempt 1, to the other connection.
    fake.redeliver(&first);
    let again = bot.next_push().await;
    assert_eq!(again.event_id, p.event_id);
    fake.wait_for("the redelivery's ack", |s| {
        (s.acks.iter().filter(|a| a.envelope_id == first).count() == 2).then_some(())
    })
    .await;
    fake.with_state(|s| {
        let attempts = s.attempts(&first);
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (attempts[1].retry_attempt, attempts[1].retry_reason.as_str()),
            (1, "timeout")
        );
    });

    assert_envelopes_parse(&fake);
    fake.assert_acked_in_time().await;
    fake.assert_no_unexpected();
    bot.assert_quiet();
    bot.stop().await;
}

#[tokio::test]
async fn socket_mode_reconnects_after_disconnect_and_drop() {
    let fake = FakeSlack::start().await;
    let mut bot = Bot::start(&fake, 1).await;
    fake.wait_connections(1).await;

    // refresh_requested: the library opens a new connection; the old one is closed.
    fake.disconnect("refresh_requested");
    fake.wait_for("a second connection, the first closed", |s| {
        (s.sockets.len() == 2 && !s.sockets[0].open && s.open_sockets() == 1).then_some(())
    })
    .await;
    assert_eq!(fake.connections_opened(), 2);
    let id = fake.push_message(CHANNEL, &SlackUser::admin(), "after refresh");
    bot.next_push().await;
    assert_eq!(fake.wait_acked(&id).await.connection, 1);

    // slack-morphism restarts its connection on any disconnect, a warning too.
    fake.disconnect("warning");
    fake.wait_for("a third connection", |s| {
        (s.sockets.len() == 3 && s.open_sockets() == 1 && s.sockets[2].open).then_some(())
    })
    .await;

    // A dropped connection (no close frame): the envelope being handled is never acked there;
    // the library reconnects, and the redelivery is acked.
    let slow = fake.push_message(CHANNEL, &SlackUser::admin(), "slow");
    bot.next_push().await;
    fake.drop_connections();
    fake.wait_for("a fourth connection", |s| {
        (s.sockets.len() == 4 && s.open_sockets() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.unacked(), vec![slow.clone()]);
    fake.redeliver(&slow);
    let again = bot.next_push().await;
    assert_eq!(
        message_event(&again).content.as_ref().and_then(|c| c.text.as_deref()),
        Some("slow")
    );
    assert_eq!(fake.wait_acked(&slow).await.connection, 3);
    assert!(
        bot.wss_errors
            .iter()
            .any(|e| e.contains("ResetWithoutClosingHandshake")),
        "the library saw no abrupt close: {:?}",
        bot.wss_errors
    );

    // The bot's own post comes back as a `message` event from its bot id.
    let client = client(&fake);
    let token = bot_token();
    client
        .open_session(&token)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("Deploying".into()),
        ))
        .await
        .expect("post");
    let echo = bot.next_push().await;
    let m = message_event(&echo);
    assert_eq!(m.sender.bot_id.as_ref().map(|b| b.0.as_str()), Some(BOT_ID));
    fake.expect_post(CHANNEL, "Deploying").await;

    assert_envelopes_parse(&fake);
    fake.assert_acked_in_time().await;
    fake.assert_no_unexpected();
    bot.assert_quiet();
    bot.stop().await;
}

#[tokio::test]
async fn envelopes_wait_for_a_connection_and_tickets_are_single_use() {
    let fake = FakeSlack::start().await;
    // Pushed before the bot connects: delivered on its first connection.
    let early = fake.push_slash(OTHER_CHANNEL, &SlackUser::numbered(3), "status");
    let mut bot = Bot::start(&fake, 1).await;
    match bot.next().await {
        Got::Command(c) => assert_eq!(
            (c.user_id.0.as_str(), c.channel_id.0.as_str()),
            ("U0USER3", OTHER_CHANNEL)
        ),
        other => panic!("expected a command, got {other:?}"),
    }
    fake.wait_acked(&early).await;
    bot.stop().await;

    // A ticket works once; a made-up one is refused.
    let client = client(&fake);
    let app = app_token();
    let url = client
        .open_session(&app)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .expect("apps.connections.open")
        .url;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.0.as_str()).await.expect("connect");
    let hello: Value = match ws.next().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => serde_json::from_str(&t).expect("json"),
        other => panic!("expected hello, got {other:?}"),
    };
    assert_eq!(
        (hello["type"].as_str(), hello["connection_info"]["app_id"].as_str()),
        (Some("hello"), Some(APP_ID))
    );
    assert!(
        hello["debug_info"]["host"].is_string() && hello["num_connections"].is_u64(),
        "{hello}"
    );
    assert!(
        tokio_tungstenite::connect_async(url.0.as_str()).await.is_err(),
        "ticket reused"
    );
    let forged = format!("{}/link?ticket=999", fake.socket_url());
    assert!(tokio_tungstenite::connect_async(forged.as_str()).await.is_err());
    let unexpected = fake.with_state(|s| s.unexpected.clone());
    assert_eq!(unexpected.len(), 2, "{unexpected:?}");
    assert!(unexpected.iter().all(|u| u.contains("ticket")));
}

#[tokio::test]
#[should_panic(expected = "not acknowledged")]
async fn an_envelope_never_acked_fails_the_check() {
    let fake = FakeSlack::start().await;
    fake.push_message(CHANNEL, &SlackUser::stranger(), "nobody listens");
    fake.assert_acked_in_time().await;
}
