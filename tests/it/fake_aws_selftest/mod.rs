//! Self-tests of the scripted fake AWS endpoint, driven by the real aws-sdk clients, so the
//! scenario tests can trust what it serves.
use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::config::{Credentials, Region};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, ExecutionStatus, Parameter, ResourceStatus, StackStatus, Tag,
};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use support::fake_aws::*;

async fn sdk_config(fake: &FakeAws) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(fake.endpoint_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFAKE", "secret", None, None, "static"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
        .load()
        .await
}

async fn cfn_client(fake: &FakeAws) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&sdk_config(fake).await)
}

/// Argos's own EC2 client on the fake, with the same retries as `sdk_config`'s.
async fn ec2_client(fake: &FakeAws) -> argos::cloud::Aws {
    let settings = argos::config::AwsSettings {
        endpoint_url: Some(fake.endpoint_url()),
        local_credentials: true,
        retry_initial_backoff_ms: 5,
        max_attempts: 3,
        ..argos::config::AwsSettings::default()
    };
    argos::cloud::Aws::connect_with(&settings, "us-east-1").await
}

const RESOURCES: &[(&str, &str)] = &[
    ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("DataVolume", "AWS::EC2::Volume"),
    ("WebServerInstance", "AWS::EC2::Instance"),
    ("WebServerEIP", "AWS::EC2::EIP"),
];

const TEMPLATE: &str = r#"{"Description":"argos test","Parameters":{"Env":{"Type":"String","Default":"dev","Description":"environment"},"Size":{"Type":"String"}},
"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":{"Ref":"Env"}}},
"WebServerInstance":{"Type":"AWS::EC2::Instance","Properties":{"InstanceType":{"Ref":"Size"}}}}}"#;

fn prev_size() -> Parameter {
    Parameter::builder()
        .parameter_key("Size")
        .use_previous_value(true)
        .build()
}

/// Polls DescribeStacks until the status is `want` (at most 2 s).
async fn wait_for(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    want: StackStatus,
) -> aws_sdk_cloudformation::types::Stack {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let out = cfn.describe_stacks().stack_name(stack).send().await.expect("describe");
        let s = out.stacks()[0].clone();
        if s.stack_status() == Some(&want) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stack stuck in {:?}",
            s.stack_status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

mod change_sets;
mod ec2;
mod failures;
mod paused_clock;
mod stacks;
