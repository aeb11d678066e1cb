//! The Web API: round trips, Slack's rejections, 429s with Retry-After, file uploads, the config snippet.
use super::*;

// Web API

#[tokio::test]
async fn web_api_round_trip() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);

    let me = session.auth_test().await.expect("auth.test");
    assert_eq!(me.user_id.0, BOT_USER_ID);
    assert_eq!(me.bot_id.map(|b| b.0).as_deref(), Some(BOT_ID));
    assert_eq!(me.team_id.0, TEAM_ID);

    let posted = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                CHANNEL.into(),
                SlackMessageContent::new()
                    .with_text("Deploy staging?".into())
                    .with_blocks(approval_blocks()),
            )
            .with_unfurl_links(false)
            .with_unfurl_media(false),
        )
        .await
        .expect("chat.postMessage");
    assert_eq!(posted.channel.0, CHANNEL);
    assert!(matches!(
        posted.message.content.blocks.as_deref(),
        Some([SlackBlock::Section(_), SlackBlock::Actions(_)])
    ));
    let ts = posted.ts.0.clone();
    let post = fake.expect_post(CHANNEL, "*Deploy* staging?").await;
    assert_eq!(post.ts, ts);
    assert_eq!(post.params["unfurl_links"], json!(false));
    let buttons = post.buttons();
    assert_eq!(buttons.len(), 2, "{buttons:?}");
    assert_eq!(
        buttons[0],
        SlackButton {
            action_id: "approve".into(),
            block_id: Some("decide".into()),
            value: Some("job-1".into()),
            text: "Approve".into(),
            style: Some("primary".into()),
            confirm: false,
            url: None,
        }
    );
    assert!(buttons[1].confirm && buttons[1].style.as_deref() == Some("danger"));

    // A reply in the thread, in the other channel: unique, increasing ts.
    let reply = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                OTHER_CHANNEL.into(),
                SlackMessageContent::new().with_text("<!here> staging is down".into()),
            )
            .with_thread_ts(SlackTs(ts.clone())),
        )
        .await
        .expect("reply");
    assert!(reply.ts.0 > ts, "{} after {ts}", reply.ts.0);
    let reply_post = fake.expect_post(OTHER_CHANNEL, "staging is down").await;
    assert_eq!(reply_post.thread_ts.as_deref(), Some(ts.as_str()));
    assert_eq!(reply_post.broadcasts(), vec!["<!here>"]);
    assert!(post.broadcasts().is_empty());

    // Update: new text, blocks left out are kept (as Slack does); then blocks removed.
    let updated = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("Deploying staging".into()),
            SlackTs(ts.clone()),
        ))
        .await
        .expect("chat.update");
    assert_eq!(updated.ts.0, ts);
    let m = fake.message(CHANNEL, &ts).expect("stored");
    assert_eq!(
        (m.text.as_str(), m.buttons().len(), m.edits),
        ("Deploying staging", 2, 1)
    );
    session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new()
                .with_text("Deployed".into())
                .with_blocks(vec![]),
            SlackTs(ts.clone()),
        ))
        .await
        .expect("chat.update");
    let m = fake.message(CHANNEL, &ts).expect("stored");
    assert!(m.buttons().is_empty() && m.edits == 2, "{m:?}");
    fake.with_state(|s| {
        assert_eq!(s.updates.len(), 2);
        assert_eq!(s.updates[1].blocks, Some(vec![]));
        assert_eq!(s.updates[0].blocks_now.len(), 2);
    });

    session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            CHANNEL.into(),
            SlackUser::stranger().id.into(),
            SlackMessageContent::new().with_text("You may not deploy.".into()),
        ))
        .await
        .expect("chat.postEphemeral");
    fake.with_state(|s| {
        assert_eq!(s.ephemerals.len(), 1);
        assert_eq!(s.ephemerals[0].user, "U0STRANGER");
        assert!(s.ephemerals[0].all_text().contains("may not"));
    });

    // A user id as the channel: the bot's direct message channel with them.
    let admin = SlackUser::admin();
    let dm = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            admin.id.clone().into(),
            SlackMessageContent::new().with_text("Your deploy finished".into()),
        ))
        .await
        .expect("direct message");
    assert_eq!(dm.channel.0, admin.dm());
    fake.expect_post(&admin.dm(), "finished").await;

    let groups = session
        .usergroups_list(&SlackApiUserGroupsListRequest::new().with_include_users(true))
        .await
        .expect("usergroups.list");
    assert_eq!(groups.usergroups.len(), 1);
    let g = &groups.usergroups[0];
    assert_eq!(
        (g.id.0.as_str(), g.handle.as_str()),
        (DEPLOYERS_GROUP, DEPLOYERS_HANDLE)
    );
    assert_eq!(g.users.as_ref().map(|u| u[0].0.clone()), Some(SlackUser::deployer().id));
    let without = session
        .usergroups_list(&SlackApiUserGroupsListRequest::new())
        .await
        .expect("usergroups.list");
    assert!(without.usergroups[0].users.is_none());
    fake.set_group_members(DEPLOYERS_GROUP, &[&SlackUser::deployer(), &SlackUser::numbered(7)]);
    let members = session
        .usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new(DEPLOYERS_GROUP.into()))
        .await
        .expect("usergroups.users.list");
    assert_eq!(members.users.len(), 2);
    assert_eq!(members.users[1].0, "U0USER7");

    // What each method sent, as the adapter author needs to know.
    assert_eq!(fake.calls("auth.test").len(), 1);
    assert_eq!(fake.calls("usergroups.list")[0].params["include_users"], json!("true"));
    assert_eq!(fake.rate_limited(), 0);
    fake.assert_all_read();
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn web_api_rejections_are_slacks() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);

    let wrong = SlackApiToken::new("xoxb-not-ours".into());
    assert_eq!(api_error(client.open_session(&wrong).auth_test().await), "invalid_auth");
    let app = app_token();
    let r = client
        .open_session(&app)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("hi".into()),
        ))
        .await;
    assert_eq!(api_error(r), "not_allowed_token_type");
    let bot = bot_token();
    let session = client.open_session(&bot);
    let r = session
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await;
    assert_eq!(api_error(r), "not_allowed_token_type");
    let r = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("x".into()),
            SlackTs("1.000001".into()),
        ))
        .await;
    assert_eq!(api_error(r), "message_not_found");
    let r = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0NOWHERE".into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await;
    assert_eq!(api_error(r), "channel_not_found");

    // Block Kit limits: a button label over 75 characters.
    let long: Vec<SlackBlock> = serde_json::from_value(json!([{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "x".repeat(80)}}]}]))
    .expect("blocks");
    let r = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_blocks(long),
        ))
        .await;
    match r {
        Err(SlackClientError::ApiError(e)) => {
            assert_eq!(e.code, "invalid_blocks");
            assert!(
                format!("{:?}", e.errors).contains("/blocks/0/elements/0/text/text"),
                "{e:?}"
            );
        }
        other => panic!("expected invalid_blocks, got {other:?}"),
    }

    // A method the fake does not serve: 404.
    let r = session
        .users_info(&SlackApiUsersInfoRequest::new(SlackUser::admin().id.into()))
        .await;
    assert!(
        matches!(&r, Err(SlackClientError::HttpError(e)) if e.status_code.as_u16() == 404),
        "{r:?}"
    );

    // A base URL with a trailing slash makes `/api//auth.test`: slack-morphism joins with '/'.
    let slashed = client_at(&format!("{}/", fake.api_url()));
    assert!(slashed.open_session(&bot).auth_test().await.is_err());

    let unexpected = fake.with_state(|s| s.unexpected.clone());
    let want = [
        "invalid_auth",
        "not_allowed_token_type",
        "message_not_found",
        "channel_not_found",
        "invalid_blocks",
        "users.info",
        "double slash",
    ];
    for w in want {
        assert!(unexpected.iter().any(|u| u.contains(w)), "{w} not in {unexpected:#?}");
    }
    assert!(fake.with_state(|s| s.posts.is_empty()));

    // The canned failures.
    fake.fail_next("auth.test", "account_inactive");
    assert_eq!(api_error(session.auth_test().await), "account_inactive");
    session.auth_test().await.expect("only the next call fails");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);
    let post = |channel: &str, text: &str| {
        SlackApiChatPostMessageRequest::new(channel.into(), SlackMessageContent::new().with_text(text.into()))
    };

    let first = session.chat_post_message(&post(CHANNEL, "one")).await.expect("first");
    match session.chat_post_message(&post(CHANNEL, "two")).await {
        Err(SlackClientError::RateLimitError(e)) => {
            assert_eq!(e.retry_after, Some(Duration::from_secs(1)), "{e:?}");
            assert_eq!(e.code.as_deref(), Some("ratelimited"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(fake.rate_limited(), 1);
    // Per channel: the other channel is free, and the limited post was not applied.
    session
        .chat_post_message(&post(OTHER_CHANNEL, "three"))
        .await
        .expect("other channel");
    assert_eq!(fake.with_state(|s| s.posts.len()), 2);

    // chat.update: 10 per 2 s for the workspace by default.
    let ts = first.ts;
    let update = |n: u32| {
        SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text(format!("edit {n}")),
            ts.clone(),
        )
    };
    for n in 0..FakeSlackLimits::TEST.updates_per_window {
        session.chat_update(&update(n)).await.expect("within the update limit");
    }
    match session.chat_update(&update(99)).await {
        Err(SlackClientError::RateLimitError(e)) => {
            let after = e.retry_after.expect("Retry-After");
            assert!(
                after >= Duration::from_secs(1) && after <= Duration::from_secs(2),
                "{after:?}"
            );
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(fake.rate_limited(), 2);
    assert_eq!(fake.message(CHANNEL, &ts.0).expect("stored").text, "edit 9");
    fake.with_state(|s| assert_eq!(s.limited, vec!["chat.postMessage C0DEPLOYS", "chat.update C0DEPLOYS"]));

    // Waiting Retry-After out is enough.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    session
        .chat_post_message(&post(CHANNEL, "four"))
        .await
        .expect("after the window");

    fake.rate_limit_next("chat.postEphemeral", 7);
    let r = session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            CHANNEL.into(),
            SlackUser::admin().id.into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await;
    assert!(
        matches!(&r, Err(SlackClientError::RateLimitError(e)) if e.retry_after == Some(Duration::from_secs(7))),
        "{r:?}"
    );
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn file_upload_in_three_steps() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);
    let content = b"TASK [deploy] ok\nPLAY RECAP failed=0\n".to_vec();

    let url = session
        .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
            "deploy.log".into(),
            content.len(),
        ))
        .await
        .expect("files.getUploadURLExternal");
    assert!(url
        .upload_url
        .0
        .as_str()
        .starts_with(&format!("{}/upload/", fake.url())));
    session
        .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
            url.upload_url.clone(),
            content.clone(),
            "text/plain".into(),
        ))
        .await
        .expect("upload");
    let done = session
        .files_complete_upload_external(
            &SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(url.file_id.clone()).with_title("Deploy log".into())
            ])
            .with_channel_id(CHANNEL.into())
            .with_thread_ts(SlackTs("1700000000.000100".into()))
            .with_initial_comment("The log".into()),
        )
        .await
        .expect("files.completeUploadExternal");
    assert_eq!(done.files[0].id, url.file_id);
    assert_eq!(done.files[0].title.as_deref(), Some("Deploy log"));

    let u = fake.upload(&url.file_id.0).expect("recorded");
    assert!(u.completed);
    assert_eq!(u.filename, "deploy.log");
    assert_eq!(u.length, content.len());
    assert_eq!(u.bytes.as_deref(), Some(content.as_slice()));
    assert_eq!(u.content_type.as_deref(), Some("text/plain"));
    assert_eq!(u.channel.as_deref(), Some(CHANNEL));
    assert_eq!(u.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(u.initial_comment.as_deref(), Some("The log"));
    assert!(u.text().contains("PLAY RECAP"));

    // Completing a file that was never uploaded fails.
    let r = session
        .files_complete_upload_external(&SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(SlackFileId("F0NOPE".into())),
        ]))
        .await;
    assert_eq!(api_error(r), "file_not_found");
}

#[tokio::test]
async fn config_snippet_points_at_the_fake() {
    let fake = FakeSlack::start().await;
    let yaml = fake.bot_config();
    assert!(yaml.contains(&format!("  api_url: {}\n", fake.api_url())), "{yaml}");
    assert!(!fake.api_url().ends_with('/'));
    assert!(yaml.contains("app_token_env: ARGOS_TEST_SLACK_APP_TOKEN"));
    fake.set_token_env();
    assert_eq!(std::env::var(BOT_TOKEN_ENV).as_deref(), Ok(BOT_TOKEN));
    assert_eq!(std::env::var(APP_TOKEN_ENV).as_deref(), Ok(APP_TOKEN));
    // The Block Kit readers.
    let blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "Title"}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "hi"},
               "accessory": {"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "X"}}}),
    ];
    assert_eq!(texts_in(&blocks), vec!["Title", "hi", "X"]);
    assert_eq!(buttons_in(&blocks)[0].action_id, "x");
    assert_eq!(
        broadcast_mentions("<!channel> <!here|here> <!everyone> <!subteam^S1|@d> <@U1> <!date^1|x>"),
        vec!["<!channel>", "<!here|here>", "<!everyone>"]
    );
}
