//! Unit tests of the template module: strict parsing, merging, references and limits, and
//! (in `condition_tests`) the evaluation of conditions and rules.

use super::*;
use serde_json::json;

fn file(name: &str, v: Value) -> TemplateFile {
    TemplateFile {
        path: PathBuf::from(name),
        body: v.as_object().unwrap().clone(),
    }
}

fn sg(group: &str) -> Value {
    json!({"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": group}})
}

#[test]
fn duplicate_keys_are_errors_with_position() {
    let err = parse_strict("{\n  \"a\": 1,\n  \"a\": 2\n}").unwrap_err();
    assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
    assert_eq!(err.line(), 3);
    assert!(parse_strict("{\"a\": {\"b\": 1, \"b\": 1}}").is_err());
    assert!(parse_strict("{\"a\": [{\"b\": 1}, {\"b\": 1}]}").is_ok());
}

#[test]
fn merges_sections_and_keeps_sources() {
    let a = file(
        "a.json",
        json!({"Parameters": {"P": {"Type": "String"}}, "Resources": {"A": sg("a")}}),
    );
    let b = file(
        "b.json",
        json!({"Resources": {"B": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": {"Ref": "P"}}}}, "Outputs": {"O": {"Value": {"Fn::GetAtt": ["A", "GroupId"]}}}}),
    );
    let t = merge(&[a, b]).unwrap();
    assert_eq!(t.resources().len(), 2);
    assert_eq!(t.sources["B"], PathBuf::from("b.json"));
    assert_eq!(t.parameters()[0].name, "P");
    assert!(t.body.len() < MAX_BODY_BYTES);
}

#[test]
fn a_clash_names_both_files_even_across_sections() {
    let a = file("a.json", json!({"Resources": {"Thing": sg("a")}}));
    let b = file(
        "b.json",
        json!({"Outputs": {"Thing": {"Value": "x"}}, "Resources": {"B": sg("b")}}),
    );
    let err = merge(&[a, b]).unwrap_err().to_string();
    assert!(
        err.contains("'Thing'") && err.contains("a.json") && err.contains("b.json"),
        "{err}"
    );
}

#[test]
fn dangling_references_are_caught() {
    let cases = [
        json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Ref": "Nope"}}}}}),
        json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["Nope", "Id"]}}}}}),
        json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::Sub": "${Nope}-x"}}}}}),
        json!({"Resources": {"A": {"Type": "T", "Condition": "Nope"}}}),
        json!({"Resources": {"A": {"Type": "T", "DependsOn": ["Nope"]}}}),
    ];
    for c in cases {
        let err = merge(&[file("x.json", c.clone())]).unwrap_err().to_string();
        assert!(err.contains("Nope") && err.contains("x.json"), "{c}: {err}");
    }
    let ok = json!({"Parameters": {"P": {"Type": "String"}}, "Resources": {"A": {"Type": "T", "Properties": {
        "X": {"Fn::Sub": "${P}-${AWS::Region}-${!Literal}-${A.Arn}"},
        "Y": {"Fn::Sub": ["${v}", {"v": "1"}]}, "Z": {"Ref": "AWS::StackName"}}}}});
    merge(&[file("ok.json", ok)]).unwrap();
}

#[test]
fn limits_are_enforced() {
    let mut resources = Map::new();
    for i in 0..=MAX_RESOURCES {
        resources.insert(format!("R{i}"), json!({"Type": "T"}));
    }
    let err = merge(&[file("big.json", json!({ "Resources": resources }))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("501 resources"), "{err}");

    let mut params = Map::new();
    for i in 0..=MAX_PARAMETERS {
        params.insert(format!("P{i}"), json!({"Type": "String"}));
    }
    let err = merge(&[file(
        "p.json",
        json!({"Parameters": params, "Resources": {"A": {"Type": "T"}}}),
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("201 parameters"), "{err}");

    let long = "x".repeat(MAX_BODY_BYTES);
    let err = merge(&[file(
        "l.json",
        json!({"Resources": {"A": {"Type": "T", "Metadata": long}}}),
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("bytes"), "{err}");
}

#[cfg(test)]
mod condition_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_only_resources_whose_condition_holds() {
        let body = json!({
            "Parameters": {"EnableBroker": {"Type": "String"}, "WorkerCount": {"Type": "Number"}},
            "Conditions": {
                "BrokerEnabled": {"Fn::Equals": [{"Ref": "EnableBroker"}, "true"]},
                "WorkersEnabled": {"Fn::Not": [{"Fn::Or": [{"Fn::Equals": [{"Ref": "WorkerCount"}, "0"]}, {"Fn::Equals": [{"Ref": "WorkerCount"}, 0]}]}]},
                "Both": {"Fn::And": [{"Condition": "BrokerEnabled"}, {"Condition": "WorkersEnabled"}]}
            },
            "Resources": {"A": {"Type": "T"}, "B": {"Type": "T", "Condition": "BrokerEnabled"}, "W": {"Type": "T", "Condition": "WorkersEnabled"}, "X": {"Type": "T", "Condition": "Both"}}
        });
        let t = merge(&[TemplateFile {
            path: "t.json".into(),
            body: body.as_object().unwrap().clone(),
        }])
        .unwrap();
        let p = |b: &str, w: &str| {
            BTreeMap::from([
                ("EnableBroker".to_string(), b.to_string()),
                ("WorkerCount".to_string(), w.to_string()),
            ])
        };
        assert_eq!(t.active_resources(&p("false", "0")), 1);
        assert_eq!(t.active_resources(&p("true", "0")), 2);
        assert_eq!(t.active_resources(&p("true", "2")), 4);
        assert!(t.resource_active("W", &p("false", "2")));
        assert!(!t.resource_active("X", &p("false", "2")));
        assert!(!t.resource_active("Nope", &p("true", "2")));
        assert_eq!(t.condition_holds("Both", &p("true", "2")), Some(true));
        assert_eq!(t.condition_holds("Nope", &p("true", "2")), None);
    }

    fn one(body: Value) -> Result<Template, TemplateError> {
        merge(&[TemplateFile {
            path: "r.json".into(),
            body: body.as_object().unwrap().clone(),
        }])
    }

    #[test]
    fn a_joined_list_parameter_can_be_tested_for_emptiness() {
        let t = one(json!({
            "Parameters": {"Subnets": {"Type": "CommaDelimitedList", "Default": ""}},
            "Conditions": {"HasSubnets": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Subnets"}]}, ""]}]}},
            "Resources": {"G": {"Type": "T", "Condition": "HasSubnets"}, "A": {"Type": "T"}}
        }))
        .unwrap();
        let p = |v: &str| BTreeMap::from([("Subnets".to_string(), v.to_string())]);
        assert_eq!(t.condition_holds("HasSubnets", &p("")), Some(false));
        assert_eq!(t.condition_holds("HasSubnets", &p("subnet-a,subnet-b")), Some(true));
        assert_eq!(t.active_resources(&p("")), 1);
    }

    #[test]
    fn rules_refuse_what_their_assertions_forbid() {
        let body = json!({
            "Parameters": {"EnableBroker": {"Type": "String"}, "WorkerCount": {"Type": "Number"}},
            "Rules": {"WorkersNeedBroker": {
                "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerCount"}, "0"]}]},
                "Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "EnableBroker"}, "true"]}, "AssertDescription": "workers need the broker"}]
            }},
            "Resources": {"A": {"Type": "T"}}
        });
        let t = one(body.clone()).unwrap();
        let p = |b: &str, w: &str| {
            BTreeMap::from([
                ("EnableBroker".to_string(), b.to_string()),
                ("WorkerCount".to_string(), w.to_string()),
            ])
        };
        assert_eq!(
            t.rule_violations(&p("false", "2")),
            ["WorkersNeedBroker: workers need the broker"]
        );
        assert!(t.rule_violations(&p("true", "2")).is_empty());
        assert!(t.rule_violations(&p("false", "0")).is_empty());

        let mut dangling = body;
        dangling["Rules"]["WorkersNeedBroker"]["Assertions"][0]["Assert"]["Fn::Equals"][0] = json!({"Ref": "Nope"});
        let err = one(dangling).unwrap_err().to_string();
        assert!(err.contains("Rules.WorkersNeedBroker") && err.contains("Nope"), "{err}");
    }
}
