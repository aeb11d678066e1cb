//! An account per environment, on moto's STS: an environment names a profile or a role
//! listed under `aws.roles`; its stacks land in that account (moto takes the account from the
//! role's ARN), the session is named after the user and the job and carries the external id,
//! a denied AssumeRole says which role and environment first, and a role the config does not
//! list cannot be named at all.
use crate::support;

use argos::config::Config;
use argos::engine::{self, Ctx, Engine};
use argos::progress::ProgressTx;
use serde_json::json;
use support::moto::Moto;
use support::moto_iam::{assumed_roles, bot_policy, for_moto, without, Setup};
use support::TestProject;

const ROLE_ARN: &str = "arn:aws:iam::111111111111:role/argos-deployer";
const EXTERNAL_ID: &str = "argos-ext-7f3a9c";
const TINY: &str = r#"{"Resources": {"Group": {"Type": "AWS::EC2::SecurityGroup",
  "Properties": {"GroupDescription": "argos account test"}}}}"#;

/// A test project whose `production` assumes the listed role and `qa` uses profile `qa`;
/// `envs` replaces the environments (YAML under `environments:`) when given.
fn project(endpoint: &str, envs: Option<&str>) -> TestProject {
    let project = TestProject::new(endpoint, "");
    let text = std::fs::read_to_string(&project.config_path).unwrap();
    let roles =
        format!("aws:\n  roles:\n    prod-deployer:\n      role_arn: {ROLE_ARN}\n      external_id: {EXTERNAL_ID}\n");
    let default_envs = "  production:\n    aws: {role: prod-deployer}\n  qa:\n    aws: {profile: qa}\n";
    let text = text.replacen("aws:\n", &roles, 1).replacen(
        "environments:\n",
        &format!("environments:\n{}", envs.unwrap_or(default_envs)),
        1,
    );
    std::fs::write(&project.config_path, text).unwrap();
    project
}

fn ctx(engine: &Engine, env: &str, job: Option<(&str, u64)>) -> Ctx {
    let target = engine.target(env).expect("a configured environment");
    Ctx {
        engine: engine.clone(),
        target: match job {
            Some((user, id)) => target.for_job(user, Some(id)),
            None => target,
        },
        progress: ProgressTx::discard(),
        cancel: Default::default(),
        log: None,
    }
}

async fn create_stack(ctx: &Ctx) -> String {
    let name = ctx.target.names.stack();
    let out = ctx
        .aws()
        .cfn()
        .await
        .create_stack()
        .stack_name(&name)
        .template_body(TINY)
        .send()
        .await
        .expect("create stack");
    out.stack_id().unwrap().to_string()
}

async fn exists(aws: &argos::cloud::Aws, stack: &str) -> bool {
    argos::cloud::stack::describe(aws, stack).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_works_in_its_own_account_under_a_named_session() {
    let moto = Moto::start().await;
    let project = project(&moto.url, None);
    let engine = project.engine().await;
    let staging = ctx(&engine, "staging", Some(("alice", 41)));
    let production = ctx(&engine, "production", Some(("Alice Ops", 42)));
    assert_eq!(staging.aws().session_name(), None, "the default account has no session");
    assert_eq!(production.aws().session_name(), Some("argos-Alice-Ops-job42"));

    let staging_id = create_stack(&staging).await;
    let production_id = create_stack(&production).await;
    assert!(
        staging_id.contains(":123456789012:stack/argos-staging/"),
        "{staging_id}"
    );
    assert!(
        production_id.contains(":111111111111:stack/argos-production/"),
        "{production_id}"
    );

    // Each environment's status sees its own stack; neither account holds the other's.
    let report = engine::status(&production).await.expect("status in the role's account");
    assert_eq!(report.stack.map(|s| s.id), Some(production_id.clone()));
    let report = engine::status(&staging).await.expect("status in the default account");
    assert_eq!(report.stack.map(|s| s.id), Some(staging_id.clone()));
    assert!(!exists(staging.aws(), "argos-production").await);
    assert!(!exists(production.aws(), "argos-staging").await);
    assert!(!exists(&engine.aws, "argos-production").await);

    // The session named the user and the job, and carried the config's external id.
    let assumed = assumed_roles(&moto).await;
    assert!(
        assumed.iter().any(|(arn, name, ext)| arn == ROLE_ARN
            && name == "argos-Alice-Ops-job42"
            && ext.as_deref() == Some(EXTERNAL_ID)),
        "{assumed:?}"
    );
    // One AssumeRole for the whole session (both clients share its credentials); without a
    // job the session is named after the process's user.
    assert_eq!(
        assumed.iter().filter(|a| a.1 == "argos-Alice-Ops-job42").count(),
        1,
        "{assumed:?}"
    );
    let plain = ctx(&engine, "production", None);
    assert!(exists(plain.aws(), "argos-production").await);
    assert!(assumed_roles(&moto)
        .await
        .iter()
        .any(|a| a.1.starts_with("argos-") && !a.1.contains("job")));

    // An operation removes the stack in the role's account only.
    engine::decommission(&production)
        .await
        .expect("decommission in the role's account");
    assert!(!exists(production.aws(), "argos-production").await);
    assert!(exists(staging.aws(), "argos-staging").await);

    // The external id stays out of what may be logged.
    assert!(!format!("{:?}", production.target).contains(EXTERNAL_ID));
    assert!(!format!("{:?}", engine.config).contains(EXTERNAL_ID));
    assert!(!engine
        .redactor
        .redact(&format!("id {EXTERNAL_ID}"))
        .contains(EXTERNAL_ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_assume_role_names_the_role_and_the_environment_first() {
    let policy = for_moto(&bot_policy());
    let mut assumer = policy.clone();
    assumer["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Sid": "AssumeEnvironmentRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}));
    let qa = without(&without(&policy, "StackStatusAndEvents"), "ListStacksForReports");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]});
    let (moto, users) = Setup::default()
        .user("argos", &policy)
        .user("argos-assumer", &assumer)
        .user("argos-qa", &qa)
        .role("111111111111", "argos-deployer", &policy, &trust)
        .start()
        .await;
    // Profile `qa` holds argos-qa's key; fixed credentials replace only the default chain.
    let dir = tempfile::tempdir().unwrap();
    let qa_user = &users[2];
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[qa]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            qa_user.key_id, qa_user.secret
        ),
    )
    .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
    std::env::set_var("AWS_CONFIG_FILE", dir.path().join("config"));
    let project = project(&moto.url, None);

    let engine = Engine::with_credentials(project.config(), &users[0].key_id, &users[0].secret).await;
    engine::status(&ctx(&engine, "staging", None))
        .await
        .expect("the bot's own account works");
    let err = engine::status(&ctx(&engine, "production", Some(("bob", 7))))
        .await
        .expect_err("the bot's user may not assume the role");
    let text = err.to_string();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "assume role prod-deployer ({ROLE_ARN}) for environment production failed:"
        )),
        "{text}"
    );
    // Real STS says `AccessDenied: User: ... is not authorized to perform: sts:AssumeRole`;
    // moto's STS error body is not one the SDK reads, so only the refusal is known here.
    assert!(
        first.contains("refused the role") || first.contains("sts:AssumeRole"),
        "{text}"
    );
    assert!(
        !text.contains(EXTERNAL_ID) && !text.contains(&users[0].secret),
        "{text}"
    );

    // With sts:AssumeRole the same environment works, as the role in its own account.
    let engine = Engine::with_credentials(project.config(), &users[1].key_id, &users[1].secret).await;
    let report = engine::status(&ctx(&engine, "production", Some(("bob", 8)))).await;
    assert!(report.expect("status through the role").stack.is_none());

    // qa calls with its profile's key: argos-qa's narrower policy is the one refused.
    let err = engine::status(&ctx(&engine, "qa", None))
        .await
        .expect_err("argos-qa may not describe stacks");
    let first = err.to_string().lines().next().unwrap().to_string();
    assert!(
        first.contains("user/argos-qa") && first.contains("cloudformation:DescribeStacks"),
        "{first}"
    );
    drop(moto);
}

fn load(envs: &str) -> Result<Config, String> {
    let project = project("http://127.0.0.1:9", Some(envs));
    let result = Config::load(&project.config_path).map_err(|e| e.to_string());
    drop(project);
    result
}

#[test]
fn only_roles_the_config_lists_can_be_used() {
    let err = load("  production:\n    aws: {role: ops-admin}\n").unwrap_err();
    assert!(
        err.contains("environments.production.aws.role") && err.contains("not listed under aws.roles"),
        "{err}"
    );
    // An ARN is not a name: a role reaches the engine only through the list.
    let err = load("  production:\n    aws: {role: \"arn:aws:iam::222233334444:role/x\"}\n").unwrap_err();
    assert!(
        err.contains("not listed under aws.roles (listed: prod-deployer)"),
        "{err}"
    );
    let err = load("  production:\n    aws: {role: prod-deployer, profile: prod}\n").unwrap_err();
    assert!(err.contains("a profile or a role, not both"), "{err}");
    assert!(load("  production:\n    aws: {role: prod-deployer}\n").is_ok());

    // What chat names is an environment; its account comes from the config.
    let config = load("  production:\n    aws: {role: prod-deployer}\n").unwrap();
    assert!(config.environment("production").unwrap().1.aws.role.as_deref() == Some("prod-deployer"));
    assert!(config.environment("arn:aws:iam::222233334444:role/x").is_err());
}

#[test]
fn a_role_needs_a_well_formed_arn_and_its_external_id() {
    let project = project(
        "http://127.0.0.1:9",
        Some("  production:\n    aws: {role: prod-deployer}\n"),
    );
    let text = std::fs::read_to_string(&project.config_path).unwrap();
    let broken = text.replacen(ROLE_ARN, "arn:aws:iam::1111:role/argos-deployer", 1);
    std::fs::write(&project.config_path, broken).unwrap();
    let err = Config::load(&project.config_path).unwrap_err().to_string();
    assert!(err.contains("aws.roles.prod-deployer.role_arn"), "{err}");

    let missing = text.replacen(
        &format!("external_id: {EXTERNAL_ID}"),
        "external_id_env: ARGOS_TEST_UNSET_EXTERNAL_ID",
        1,
    );
    std::fs::write(&project.config_path, missing).unwrap();
    let err = Config::load(&project.config_path).unwrap_err().to_string();
    assert!(err.contains("ARGOS_TEST_UNSET_EXTERNAL_ID is not set"), "{err}");
}
