//! What the tests ask EC2 themselves (what an operation left behind, or set-ups no operation
//! makes), through argos's own EC2 client: one call by action and parameters, its answer's
//! lists and tags.

use std::collections::BTreeMap;

use argos::cloud::ec2::{Element, Failure, Params};
use argos::cloud::Aws;

/// `action` with `params`; the test fails on an error.
pub async fn call(aws: &Aws, action: &str, params: Params) -> Element {
    try_call(aws, action, params)
        .await
        .unwrap_or_else(|e| panic!("{action} failed: {e:?}"))
}

/// `action` with `params`, its error kept.
pub async fn try_call(aws: &Aws, action: &str, params: Params) -> Result<Element, Failure> {
    aws.ec2().await.call(action, &params).await
}

/// Filters of one value each.
pub fn filters(pairs: &[(&str, &str)]) -> Params {
    let pairs: Vec<(String, Vec<&str>)> = pairs.iter().map(|(k, v)| (k.to_string(), vec![*v])).collect();
    Params::new().filters(&pairs)
}

/// Every instance of a DescribeInstances answer, across its reservations.
pub fn instances(answer: &Element) -> Vec<&Element> {
    answer
        .items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .collect()
}

/// An item's `tagSet` as a map.
pub fn tag_map(item: &Element) -> BTreeMap<String, String> {
    item.tags().collect()
}
