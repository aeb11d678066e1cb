//! Versions: which commit a deploy takes (the ref asked for, or the environment's default,
//! checked against the refs the environment accepts, and resolved to a commit before the job
//! exists), what runs where (the jobs that deployed a commit), and what a rollback undoes.
//! Versions are on when `repository.url` is configured; without it a deploy takes the
//! playbooks' `app_version` as before and records no commit.

use std::collections::BTreeMap;
use std::fmt;

use crate::command::{short_sha, Action, Version};
use crate::config::{Config, EnvSettings, OtherRefs};
use crate::engine::{deploy, Ctx, Engine, Summary};
use crate::error::{Error, Result};
use crate::git::{AppRepo, Auth, CommitRange};
use crate::permissions::pattern_matches;
use crate::store::{JobRecord, JobState, Store};

/// The ref an environment deploys when none is named.
pub const DEFAULT_REF: &str = "master";

/// How many commits a rollback's plan names (the rest are counted).
const UNDONE_NAMED: usize = 10;

/// Opens the app's repository as the config describes it: a mirror under the state folder.
pub fn open_repo(config: &Config) -> std::result::Result<AppRepo, String> {
    let r = &config.settings.repository;
    let url = r.url.clone().ok_or("repository.url is not set")?;
    let auth = match (&r.ssh_key, &r.token_env) {
        (Some(_), Some(_)) => return Err("repository: give ssh_key or token_env, not both".into()),
        (Some(key), None) => Auth::SshKey {
            key: config.root.join(key),
            known_hosts: r.known_hosts.as_ref().map(|k| config.root.join(k)),
        },
        (None, Some(var)) => Auth::token(var.clone()),
        (None, None) => Auth::None,
    };
    // A local path is taken relative to the config, like every other path in it.
    let url = if !url.contains("://") && !url.contains('@') && !url.starts_with('/') {
        config.root.join(&url).to_string_lossy().into_owned()
    } else {
        url
    };
    let mirror = config
        .state_dir()
        .join("git")
        .join(format!("{}.git", config.vars.app_name));
    AppRepo::new(url, mirror, auth)
        .map(|repo| repo.with_timeout(std::time::Duration::from_secs(r.fetch_timeout_secs.max(1))))
        .map_err(|e| format!("repository.url: {e}"))
}

/// The playbooks' variables for the commit an action deploys (nothing when it names none):
/// the commit, not the ref, so every host checks out the same code however the branch moves
/// meanwhile, and the repository it was resolved in, so the hosts fetch from that one.
pub fn playbook_vars(engine: &Engine, version: &Version, extra: &mut BTreeMap<String, String>) {
    let Some(commit) = &version.commit else {
        return;
    };
    extra.insert("app_version".into(), commit.clone());
    extra.insert("app_commit".into(), commit.clone());
    if let Some(Ok(repo)) = engine.repo() {
        extra.insert("app_repo".into(), repo.display_url());
    }
}

/// What runs on an environment now (its last good deploy) and how many commits that is
/// behind the environment's default ref, when the repository answers; for `status`.
pub async fn deployed(engine: &Engine, env: &str, settings: &EnvSettings) -> Option<(JobRecord, Option<u32>)> {
    let job = current(engine, env).ok().flatten()?;
    let behind = match &job.sha {
        Some(sha) => behind(engine, settings, sha).await,
        None => None,
    };
    Some((job, behind))
}

/// The ref `settings`' environment deploys when none is named.
pub fn default_ref(settings: &EnvSettings) -> &str {
    settings.git_ref.as_deref().unwrap_or(DEFAULT_REF)
}

/// Whether an environment takes a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefCheck {
    Accepted,
    /// Outside the listed refs, and `other_refs: approval`: the rule, for the request.
    NeedsApproval(String),
}

/// Checks `name` against the refs `env` accepts; a refusal names the rule.
pub fn check_ref(env: &str, settings: &EnvSettings, name: &str) -> Result<RefCheck> {
    if settings.refs.is_empty() || settings.refs.iter().any(|p| pattern_matches(p, name)) {
        return Ok(RefCheck::Accepted);
    }
    let rule = format!(
        "{env} takes only {} (environments.{env}.refs)",
        settings.refs.join(", ")
    );
    match settings.other_refs {
        OtherRefs::Refuse => Err(Error::Refused(format!("ref `{name}` refused: {rule}"))),
        OtherRefs::Approval => Ok(RefCheck::NeedsApproval(format!(
            "ref `{name}` is outside the rule: {rule}"
        ))),
    }
}

/// An action with its commit resolved.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub action: Action,
    /// Why the action needs an approval its policy alone would not ask for (a ref outside
    /// the environment's rule).
    pub needs_approval: Option<String>,
}

/// Resolves the commit an action deploys, before a job exists: an unknown ref, a ref the
/// environment refuses, or a rollback with nothing to go back to is refused here, and the
/// job deploys the commit found now even if the branch moves.
pub async fn pin(engine: &Engine, env: &str, mut action: Action) -> Result<Pinned> {
    let (_, settings) = engine.config.environment(env).map_err(Error::Invalid)?;
    let to = match &action {
        Action::Rollback { to, .. } => Some(to.clone()),
        _ => None,
    };
    let Some(version) = action.version_mut() else {
        return Ok(Pinned {
            action,
            needs_approval: None,
        });
    };
    let Some(repo) = engine.repo() else {
        if version.git_ref.is_some() || to.is_some() {
            return Err(Error::Invalid(
                "versions are off: set repository.url in the config to deploy a chosen ref or roll back".into(),
            ));
        }
        return Ok(Pinned {
            action,
            needs_approval: None,
        });
    };
    let repo = repo?;
    let mut needs_approval = None;
    if let Some(to) = to {
        let (label, sha) = rollback_target(engine, &repo, env, to.as_deref()).await?;
        version.git_ref = Some(label);
        version.commit = Some(sha);
    } else {
        let name = version
            .git_ref
            .clone()
            .unwrap_or_else(|| default_ref(&settings).to_string());
        // An unknown ref is named as unknown (with the nearest names) before any rule.
        let resolved = repo.resolve(&name).await?;
        if let RefCheck::NeedsApproval(why) = check_ref(env, &settings, &name)? {
            needs_approval = Some(why);
        }
        version.git_ref = Some(name);
        version.commit = Some(resolved.sha);
    }
    Ok(Pinned { action, needs_approval })
}

/// A store error, as the engine reports it.
fn stored<T>(r: crate::store::StoreResult<T>) -> Result<T> {
    r.map_err(|e| Error::Io(e.to_string()))
}

fn store(engine: &Engine) -> Result<&Store> {
    engine
        .store
        .as_ref()
        .ok_or_else(|| Error::Invalid("no job store here: history and rollbacks need one".into()))
}

/// What runs on `env` now: its last successful deploy.
pub fn current(engine: &Engine, env: &str) -> Result<Option<JobRecord>> {
    Ok(stored(store(engine)?.good_deploys(env, 1))?.into_iter().next())
}

/// The commit the hosts of `env` most likely run: that of the last deploy that finished,
/// whether it succeeded or failed (a failed one may have checked its commit out already).
pub fn running_commit(engine: &Engine, env: &str) -> Result<Option<String>> {
    let recent = stored(store(engine)?.deploys(env, 50))?;
    Ok(recent
        .into_iter()
        .find(|j| matches!(j.state, JobState::Succeeded | JobState::Failed))
        .and_then(|j| j.sha))
}

/// The commit a rollback goes back to, and how to name it: the last good commit before the
/// current one, or the job, commit or ref `to` names.
async fn rollback_target(engine: &Engine, repo: &AppRepo, env: &str, to: Option<&str>) -> Result<(String, String)> {
    let good = stored(store(engine)?.good_deploys(env, 200))?;
    if good.is_empty() {
        return Err(Error::Refused(format!(
            "nothing to roll back: {env} has no successful deploy on record"
        )));
    }
    // What the hosts run now: the last deploy that got to them, also one that failed after
    // (an unhealthy deploy, a playbook that failed half-way). Going back means going to the
    // last good commit other than that one.
    let now_sha = running_commit(engine, env)?.unwrap_or_default();
    match to {
        None => good
            .iter()
            .find(|j| j.sha.as_deref() != Some(now_sha.as_str()))
            .map(|j| (format!("job #{}", j.id), j.sha.clone().unwrap_or_default()))
            .ok_or_else(|| {
                Error::Refused(format!(
                    "nothing to roll back to: every good deploy of {env} on record is {}",
                    short_sha(&now_sha)
                ))
            }),
        Some(job) if job.trim_start_matches('#').len() < 7 && job.trim_start_matches('#').parse::<u64>().is_ok() => {
            let id: u64 = job.trim_start_matches('#').parse().unwrap_or_default();
            match stored(store(engine)?.job(id))? {
                Some(j) if j.env == env && j.sha.is_some() => Ok((format!("job #{id}"), j.sha.unwrap_or_default())),
                Some(j) if j.env != env => Err(Error::Invalid(format!("job #{id} ran on {}, not {env}", j.env))),
                _ => Err(Error::Invalid(format!("job #{id} deployed no recorded commit"))),
            }
        }
        Some(name) => {
            let resolved = repo.resolve(name).await?;
            Ok((name.to_string(), resolved.sha))
        }
    }
}

/// What going from `from` back to `to` undoes.
#[derive(Debug, Clone)]
pub struct Undo {
    pub from: String,
    pub to: String,
    pub commits: CommitRange,
    /// Files under the migration paths that differ between the two.
    pub migrations: Vec<String>,
}

impl Undo {
    /// Lines for a plan or a status message.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "undoes {} commit(s), from {} back to {}",
            self.commits.total,
            short_sha(&self.from),
            short_sha(&self.to)
        )];
        out.extend(
            self.commits
                .commits
                .iter()
                .map(|c| format!("• {} {}", short_sha(&c.sha), c.subject)),
        );
        let named = self.commits.commits.len() as u32;
        if self.commits.total > named {
            out.push(format!("• … and {} more", self.commits.total - named));
        }
        if !self.migrations.is_empty() {
            out.push(format!(
                "⚠️ migrations changed between the two ({}): the database schema does not roll back with the code",
                self.migrations.join(", ")
            ));
        }
        out
    }
}

fn repo(engine: &Engine) -> Result<AppRepo> {
    engine
        .repo()
        .ok_or_else(|| Error::Invalid("versions are off: set repository.url".into()))?
}

/// The commits deploying `to` over `from` adds (none when `to` is behind `from`).
pub async fn ahead(engine: &Engine, from: &str, to: &str) -> Result<CommitRange> {
    Ok(repo(engine)?.commits_between(from, to, UNDONE_NAMED).await?)
}

/// What deploying `to` over `from` undoes (nothing when `to` is ahead of `from`).
pub async fn undo(engine: &Engine, from: &str, to: &str) -> Result<Undo> {
    let repo = repo(engine)?;
    let commits = repo.commits_between(to, from, UNDONE_NAMED).await?;
    let migrations = repo
        .changed_paths(to, from, &engine.config.settings.repository.migrations)
        .await?;
    Ok(Undo {
        from: from.to_string(),
        to: to.to_string(),
        commits,
        migrations,
    })
}

/// Rolls back: says what it undoes, then deploys the pinned commit with every role.
pub async fn rollback(ctx: &Ctx, version: &Version) -> Result<Summary> {
    let env = ctx.target.env.to_string();
    let to = version
        .commit
        .clone()
        .ok_or_else(|| Error::Invalid("a rollback needs its commit resolved first".into()))?;
    let now = running_commit(&ctx.engine, &env)?;
    let undone = match &now {
        Some(from) if *from != to => Some(undo(&ctx.engine, from, &to).await?),
        _ => None,
    };
    if let Some(u) = &undone {
        ctx.progress.step("rollback", u.lines().join("\n"));
    }
    let mut summary = deploy(ctx, &[], version).await?;
    summary.headline = format!(
        "rolled back {env} to {}",
        version.describe().unwrap_or_else(|| short_sha(&to).to_string())
    );
    if let Some(u) = undone {
        summary.details.splice(0..0, u.lines());
    }
    Ok(summary)
}

/// The last deploys of one environment.
#[derive(Debug, Clone)]
pub struct History {
    pub env: String,
    pub deploys: Vec<JobRecord>,
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deploys.is_empty() {
            return writeln!(f, "no deploys of {} on record", self.env);
        }
        for j in &self.deploys {
            writeln!(f, "{}", deploy_line(j))?;
        }
        Ok(())
    }
}

/// `#12 deploy v1.2.0 @ 1a2b3c4d · alice (discord) · 2026-12-07 10:04 UTC · succeeded · 3 host(s)`
pub fn deploy_line(j: &JobRecord) -> String {
    let version = Version {
        git_ref: j.git_ref.clone(),
        commit: j.sha.clone(),
    };
    let when = j
        .started_at
        .or(j.created_at)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let hosts = match j.hosts.len() {
        0 => String::new(),
        n => format!(" · {n} host(s)"),
    };
    format!(
        "#{} {} {} · {} ({}) · {when} · {}{hosts}",
        j.id,
        j.action,
        version.describe().unwrap_or_default(),
        j.requester_name,
        j.platform,
        j.state.as_str()
    )
}

/// `<env> history [n]`.
pub fn history(ctx: &Ctx, count: u32) -> Result<History> {
    let env = ctx.target.env.to_string();
    let deploys = stored(store(&ctx.engine)?.deploys(&env, count as usize))?;
    Ok(History { env, deploys })
}

/// How many commits the deployed commit is behind the environment's default ref, when the
/// repository answers.
pub async fn behind(engine: &Engine, settings: &EnvSettings, sha: &str) -> Option<u32> {
    let repo = engine.repo()?.ok()?;
    repo.behind(sha, default_ref(settings)).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(refs: &[&str], other: OtherRefs) -> EnvSettings {
        EnvSettings {
            refs: refs.iter().map(|r| r.to_string()).collect(),
            other_refs: other,
            ..Default::default()
        }
    }

    #[test]
    fn an_environment_takes_the_refs_it_lists_and_names_the_rule_otherwise() {
        let prod = env(&["v*"], OtherRefs::Refuse);
        assert_eq!(check_ref("production", &prod, "v1.2.0").unwrap(), RefCheck::Accepted);
        assert_eq!(
            check_ref("production", &prod, "feature-x").unwrap_err().to_string(),
            "ref `feature-x` refused: production takes only v* (environments.production.refs)"
        );
        let gated = env(&["v*"], OtherRefs::Approval);
        assert_eq!(
            check_ref("production", &gated, "feature-x").unwrap(),
            RefCheck::NeedsApproval(
                "ref `feature-x` is outside the rule: production takes only v* (environments.production.refs)".into()
            )
        );
        assert_eq!(
            check_ref("staging", &env(&[], OtherRefs::Refuse), "anything").unwrap(),
            RefCheck::Accepted
        );
        assert_eq!(default_ref(&EnvSettings::default()), "master");
    }
}
