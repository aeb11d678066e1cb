//! moto with IAM enforcement on: the server starts with `INITIAL_NO_AUTH_ACTION_COUNT` set to
//! exactly the number of setup requests, the setup (users with their access keys and managed
//! policies, roles in other accounts) runs through boto3 from the project's virtualenv, and
//! every request after it is authenticated and checked against the caller's policies.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::moto::Moto;

/// An IAM user of the setup and its access key.
#[derive(Debug, Clone)]
pub struct IamUser {
    pub name: String,
    pub key_id: String,
    pub secret: String,
}

/// What to create before enforcement starts.
#[derive(Default)]
pub struct Setup {
    users: Vec<Value>,
    roles: Vec<Value>,
}

impl Setup {
    /// A user in the default account (123456789012) holding only `policy`.
    pub fn user(mut self, name: &str, policy: &Value) -> Setup {
        self.users.push(json!({"name": name, "policy": policy}));
        self
    }

    /// A role in `account` holding `policy`, assumable under `trust`.
    pub fn role(mut self, account: &str, name: &str, policy: &Value, trust: &Value) -> Setup {
        self.roles
            .push(json!({"account": account, "name": name, "policy": policy, "trust": trust}));
        self
    }

    /// The requests the setup script makes (moto lets exactly this many through unchecked).
    fn requests(&self) -> usize {
        // CreateUser, CreatePolicy, AttachUserPolicy, CreateAccessKey; CreateRole,
        // CreatePolicy, AttachRolePolicy.
        4 * self.users.len() + 3 * self.roles.len()
    }

    /// Starts moto, runs the setup, and checks that enforcement is on.
    pub async fn start(self) -> (Moto, Vec<IamUser>) {
        let count = self.requests().to_string();
        let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", &count)]).await;
        let input = json!({"endpoint": moto.url, "users": self.users, "roles": self.roles});
        let out = python(SETUP, &input.to_string());
        let out: Value = serde_json::from_str(&out).expect("setup prints JSON");
        assert_eq!(
            out["enforced"].as_str(),
            Some("InvalidClientTokenId"),
            "unknown credentials are refused once the setup is done: {out}"
        );
        let users = out["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| IamUser {
                name: u["name"].as_str().unwrap().into(),
                key_id: u["key"].as_str().unwrap().into(),
                secret: u["secret"].as_str().unwrap().into(),
            })
            .collect();
        (moto, users)
    }
}

/// Runs a Python snippet with the project's virtualenv (boto3 is pinned there), `stdin` as
/// its input; returns what it printed.
pub fn python(script: &str, stdin: &str) -> String {
    let bin = super::repo().join(".venv/bin/python");
    let mut child = Command::new(bin)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SETUP: &str = r#"
import json, sys, boto3, botocore
spec = json.load(sys.stdin)
def client(service, account=None, key="testing", secret="testing"):
    c = boto3.client(service, endpoint_url=spec["endpoint"], region_name="us-east-1",
                     aws_access_key_id=key, aws_secret_access_key=secret,
                     config=botocore.config.Config(retries={"max_attempts": 1}))
    if account:
        c.meta.events.register("before-sign.*.*",
            lambda request, **kw: request.headers.__setitem__("x-moto-account-id", account))
    return c
iam = client("iam")
users = []
for u in spec["users"]:
    arn = iam.create_user(UserName=u["name"])["User"]["Arn"]
    p = iam.create_policy(PolicyName=u["name"] + "-policy", PolicyDocument=json.dumps(u["policy"]))
    iam.attach_user_policy(UserName=u["name"], PolicyArn=p["Policy"]["Arn"])
    k = iam.create_access_key(UserName=u["name"])["AccessKey"]
    users.append({"name": u["name"], "arn": arn, "key": k["AccessKeyId"], "secret": k["SecretAccessKey"]})
for r in spec["roles"]:
    c = client("iam", account=r["account"])
    c.create_role(RoleName=r["name"], AssumeRolePolicyDocument=json.dumps(r["trust"]))
    p = c.create_policy(PolicyName=r["name"] + "-policy", PolicyDocument=json.dumps(r["policy"]))
    c.attach_role_policy(RoleName=r["name"], PolicyArn=p["Policy"]["Arn"])
try:
    client("sts").get_caller_identity()
    enforced = "no"
except botocore.exceptions.ClientError as e:
    enforced = e.response["Error"]["Code"]
print(json.dumps({"users": users, "enforced": enforced}))
"#;

/// The bot's policy as shipped (`iam/argos-bot-policy.json`).
pub fn bot_policy() -> Value {
    let text = std::fs::read_to_string(super::repo().join("iam/argos-bot-policy.json")).expect("the policy ships");
    serde_json::from_str(&text).expect("the policy is JSON")
}

/// The policy as moto can evaluate it: moto matches every EC2 and CloudFormation request
/// against the resource `*` (it does not work out the resource's ARN), so a statement scoped
/// to ARNs would never match there. Actions, Sids and Effects stay as written; moto ignores
/// the conditions of an identity policy (it has no request context to compare with).
pub fn for_moto(policy: &Value) -> Value {
    let mut p = policy.clone();
    for st in p["Statement"].as_array_mut().expect("statements") {
        st["Resource"] = json!("*");
        st.as_object_mut().unwrap().remove("NotResource");
    }
    p
}

/// The policy without the statement `sid` (which must exist).
pub fn without(policy: &Value, sid: &str) -> Value {
    let mut p = policy.clone();
    let list = p["Statement"].as_array_mut().expect("statements");
    let before = list.len();
    list.retain(|s| s["Sid"].as_str() != Some(sid));
    assert_eq!(list.len() + 1, before, "the policy has one statement {sid}");
    p
}

/// What moto's STS recorded of every AssumeRole: (role ARN, session name, external id).
pub async fn assumed_roles(moto: &Moto) -> Vec<(String, String, Option<String>)> {
    let body = moto.get_json("/moto-api/data.json").await;
    body["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["role_arn"].as_str().unwrap_or_default().to_string(),
                r["session_name"].as_str().unwrap_or_default().to_string(),
                r["external_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}
