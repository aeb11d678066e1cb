//! Who is in which Slack user group, for roles granted to a group (`slack_groups`). One
//! `usergroups.list` call (tier 2, about 20 a minute) serves every lookup for five minutes;
//! when it fails (no `usergroups:read` scope, say) users hold only the roles granted to their
//! own ids, and the bot tries again a minute later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slack_morphism::prelude::*;
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use super::Client;

const FRESH_FOR: Duration = Duration::from_secs(300);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

struct Groups {
    read_at: Instant,
    valid_for: Duration,
    by_user: HashMap<String, Vec<String>>,
}

pub(super) struct Directory {
    client: Arc<Client>,
    token: SlackApiToken,
    groups: AsyncMutex<Option<Groups>>,
}

impl Directory {
    pub(super) fn new(client: Arc<Client>, token: SlackApiToken) -> Directory {
        Directory {
            client,
            token,
            groups: AsyncMutex::new(None),
        }
    }

    /// The ids of the user groups `user` is in.
    pub(super) async fn groups_of(&self, user: &str) -> Vec<String> {
        let mut groups = self.groups.lock().await;
        let fresh = groups.as_ref().is_some_and(|g| g.read_at.elapsed() < g.valid_for);
        if !fresh {
            *groups = Some(self.read().await);
        }
        groups
            .as_ref()
            .and_then(|g| g.by_user.get(user).cloned())
            .unwrap_or_default()
    }

    async fn read(&self) -> Groups {
        let request = SlackApiUserGroupsListRequest::new().with_include_users(true);
        let session = self.client.open_session(&self.token);
        let answer = tokio::time::timeout(Duration::from_secs(10), session.usergroups_list(&request)).await;
        match answer {
            Ok(Ok(list)) => {
                let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
                for group in list.usergroups {
                    for member in group.users.unwrap_or_default() {
                        by_user
                            .entry(member.to_string())
                            .or_default()
                            .push(group.id.to_string());
                    }
                }
                Groups {
                    read_at: Instant::now(),
                    valid_for: FRESH_FOR,
                    by_user,
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(error = %why, "cannot read Slack user groups (scope usergroups:read?): roles come from user ids only");
                Groups {
                    read_at: Instant::now(),
                    valid_for: RETRY_AFTER_FAILURE,
                    by_user: HashMap::new(),
                }
            }
        }
    }
}
