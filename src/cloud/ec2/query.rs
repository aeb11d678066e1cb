//! A request's parameters in EC2's Query form: lists are numbered from 1 and flattened into
//! their names (`Filter.2.Value.1`, `TagSpecification.1.Tag.3.Key`), and the body is the form
//! encoding of `Action`, `Version` and those pairs.

use std::collections::BTreeMap;

/// The EC2 API version every request names (the current one since 2016).
pub const VERSION: &str = "2016-11-15";

/// The parameters of one request, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// One parameter.
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Params {
        self.0.push((name.to_string(), value.into()));
        self
    }

    /// A list: `name.1`, `name.2`, …
    pub fn list<S: AsRef<str>>(mut self, name: &str, values: &[S]) -> Params {
        for (i, v) in values.iter().enumerate() {
            self.0.push((format!("{name}.{}", i + 1), v.as_ref().to_string()));
        }
        self
    }

    /// Filters: `Filter.N.Name` and its values `Filter.N.Value.M`.
    pub fn filters<S: AsRef<str>>(mut self, filters: &[(String, Vec<S>)]) -> Params {
        for (i, (name, values)) in filters.iter().enumerate() {
            let n = i + 1;
            self.0.push((format!("Filter.{n}.Name"), name.clone()));
            for (j, v) in values.iter().enumerate() {
                self.0
                    .push((format!("Filter.{n}.Value.{}", j + 1), v.as_ref().to_string()));
            }
        }
        self
    }

    /// Tags under `prefix` (`Tag`, or `TagSpecification.1.Tag`): `prefix.N.Key`, `prefix.N.Value`.
    pub fn tags(mut self, prefix: &str, tags: &BTreeMap<String, String>) -> Params {
        for (i, (k, v)) in tags.iter().enumerate() {
            self.0.push((format!("{prefix}.{}.Key", i + 1), k.clone()));
            self.0.push((format!("{prefix}.{}.Value", i + 1), v.clone()));
        }
        self
    }

    /// The value given for `name`, if any.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The form body of `action` with these parameters.
    pub fn body(&self, action: &str) -> String {
        let mut out = format!("Action={}&Version={VERSION}", encode(action));
        for (k, v) in &self.0 {
            out.push('&');
            out.push_str(&encode(k));
            out.push('=');
            out.push_str(&encode(v));
        }
        out
    }
}

/// Form encoding as Python's `quote_plus` writes it: letters, digits and `-_.~` stay, a space
/// is `+`, every other byte is `%XX`. AWS reads any form encoding; this one is also what moto
/// recomputes when it checks a signature, so the local stand-in and AWS take the same bytes.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_lists_filters_and_tags() {
        let tags = BTreeMap::from([("App".to_string(), "argos".to_string()), ("Env".into(), "a b".into())]);
        let params = Params::new()
            .list("Owner", &["self"])
            .filters(&[
                ("name".to_string(), vec!["argos-*"]),
                ("instance-state-name".to_string(), vec!["running", "pending"]),
            ])
            .tags("TagSpecification.1.Tag", &tags)
            .set("TagSpecification.1.ResourceType", "image");
        assert_eq!(
            params.body("DescribeImages"),
            "Action=DescribeImages&Version=2016-11-15&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=argos-%2A\
             &Filter.2.Name=instance-state-name&Filter.2.Value.1=running&Filter.2.Value.2=pending\
             &TagSpecification.1.Tag.1.Key=App&TagSpecification.1.Tag.1.Value=argos\
             &TagSpecification.1.Tag.2.Key=Env&TagSpecification.1.Tag.2.Value=a+b\
             &TagSpecification.1.ResourceType=image"
        );
        assert_eq!(params.get("Filter.2.Value.2"), Some("pending"));
    }

    #[test]
    fn encodes_like_a_form() {
        assert_eq!(encode("a:b/c=d&e+f~g é"), "a%3Ab%2Fc%3Dd%26e%2Bf~g+%C3%A9");
    }
}
