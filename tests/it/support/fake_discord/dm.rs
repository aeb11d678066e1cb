//! Direct messages: `POST users/@me/channels` opens (or finds) the DM channel with a person,
//! and a message to the DM channel of someone who takes no direct messages from the bot
//! ([`FakeDiscord::refuse_direct_messages`]) is answered as Discord does: 403, code 50007.
use super::*;

impl Inner {
    pub(super) fn open_dm(&self, req: &Request) -> Response {
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, None)) {
            return r;
        }
        let (body, _) = payload(req);
        let Some(user) = body["recipient_id"].as_str().map(str::to_string) else {
            return Response::json(400, &json!({"message": "Invalid Form Body", "code": 50035}));
        };
        let mut s = self.state();
        let channel = match s.dm_channels.get(&user) {
            Some(c) => c.clone(),
            None => {
                let c = s.new_id();
                s.dm_channels.insert(user.clone(), c.clone());
                c
            }
        };
        drop(s);
        self.changed();
        Response::json(
            200,
            &json!({"id": channel, "type": 1, "last_message_id": null, "flags": 0,
                "recipients": [{"id": user, "username": "someone", "discriminator": "0", "global_name": null, "avatar": null}]}),
        )
    }

    /// The 403 Discord answers a message to the DM channel of someone who refuses DMs.
    pub(super) fn dm_refused(&self, channel: &str) -> Option<Response> {
        let s = self.state();
        let refused = s
            .dm_channels
            .iter()
            .any(|(user, c)| c == channel && s.dms_refused.contains(user));
        refused.then(|| {
            Response::json(
                403,
                &json!({"message": "Cannot send messages to this user", "code": 50007}),
            )
        })
    }
}

impl FakeDiscord {
    /// From now on `user` takes no direct messages from the bot (their privacy settings).
    pub fn refuse_direct_messages(&self, user: &TestUser) {
        self.inner.state().dms_refused.insert(user.id_str());
    }

    /// The DM channel the bot opened with `user`, if it did.
    pub fn dm_channel(&self, user: &TestUser) -> Option<String> {
        self.inner.state().dm_channels.get(&user.id_str()).cloned()
    }
}
