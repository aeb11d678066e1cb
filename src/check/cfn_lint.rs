//! cfn-lint on image.json and on the merged template, when it is installed (scripts/bootstrap
//! puts the pinned one into .venv). Each finding is a failed check with its rule id, file and
//! line. The merged template exists only in memory, so it is written pretty-printed to a
//! temporary file, and a finding on it also names the formations/ file its logical id came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::Finding;
use crate::config::Config;
use crate::template::{Template, IMAGE_TEMPLATE};

const CHECK: &str = "cfn-lint";
/// One run takes a couple of seconds; a hang must not hold `argos check` for good.
const TIMEOUT: Duration = Duration::from_secs(180);
/// The label for the merged template in findings (its temporary path means nothing to anyone).
const MERGED_LABEL: &str = "merged template";

/// The project's own cfn-lint first (the pinned one), else the first on PATH.
pub fn find(root: &Path) -> Option<PathBuf> {
    let venv = root.join(".venv/bin/cfn-lint");
    if executable(&venv) {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("cfn-lint"))
        .find(|p| executable(p))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Lints both templates in one cfn-lint run (it starts slowly), for the config's region.
pub async fn findings(config: &Config, merged: &Template) -> Vec<Finding> {
    let Some(cfn_lint) = find(&config.root) else {
        return vec![Finding::ok(
            CHECK,
            "warning: cfn-lint not installed; skipped (scripts/bootstrap installs the pinned one into .venv)",
        )];
    };
    let tmp = std::env::temp_dir().join(format!("argos-cfn-lint-{}", std::process::id()));
    let out = lint(config, &cfn_lint, merged, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    out
}

async fn lint(config: &Config, cfn_lint: &Path, merged: &Template, tmp: &Path) -> Vec<Finding> {
    let image = config.formations_dir().join(IMAGE_TEMPLATE);
    let merged_file = tmp.join("merged.json");
    let written = std::fs::create_dir_all(tmp).and_then(|_| {
        let text = serde_json::to_string_pretty(&Value::Object(merged.value.clone()))?;
        std::fs::write(&merged_file, text + "\n")
    });
    if let Err(e) = written {
        return vec![Finding::fail(
            CHECK,
            format!("cannot write {}: {e}", merged_file.display()),
        )];
    }
    let mut cmd = tokio::process::Command::new(cfn_lint);
    cmd.current_dir(&config.root)
        .args(["--format", "json", "--regions", config.region()]);
    // The project's rules (and each justified skip) live in .cfnlintrc.yaml at the root.
    let rc = config.root.join(".cfnlintrc.yaml");
    if rc.exists() {
        cmd.arg("--config-file").arg(&rc);
    }
    cmd.arg("--").arg(&image).arg(&merged_file).kill_on_drop(true);
    let output = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return vec![Finding::fail(CHECK, format!("cannot run {}: {e}", cfn_lint.display()))],
        Err(_) => {
            return vec![Finding::fail(
                CHECK,
                format!("{} did not finish in {}s", cfn_lint.display(), TIMEOUT.as_secs()),
            )]
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit codes 2, 4 and 8 (and their sums) mean errors, warnings, notes: findings, in the
    // JSON. Anything else without JSON (1: a bad option, an unreadable file) is cfn-lint failing.
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(stdout.trim()) else {
        let first = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return vec![Finding::fail(
            CHECK,
            format!("{} failed ({}): {first}", cfn_lint.display(), output.status),
        )];
    };
    if items.is_empty() {
        if !output.status.success() {
            let first = stderr.lines().next().unwrap_or("no output");
            return vec![Finding::fail(CHECK, format!("exited with {}: {first}", output.status))];
        }
        return vec![Finding::ok(
            CHECK,
            format!(
                "{IMAGE_TEMPLATE} and the {MERGED_LABEL}: no findings (region {})",
                config.region()
            ),
        )];
    }
    items
        .iter()
        .map(|item| Finding::fail(CHECK, describe(item, &config.root, &image, &merged_file, merged)))
        .collect()
}

/// `formations/image.json:12: E3012 message`, or for the merge
/// `merged template:340 (Resources/ApiInstance from formations/api.json): W1020 message`.
fn describe(item: &Value, root: &Path, image: &Path, merged_file: &Path, merged: &Template) -> String {
    let rule = item["Rule"]["Id"].as_str().unwrap_or("?");
    let message = item["Message"].as_str().unwrap_or("").trim();
    let line = item["Location"]["Start"]["LineNumber"].as_u64().unwrap_or(0);
    let file = item["Filename"].as_str().map(PathBuf::from);
    let path: Vec<String> = item["Location"]["Path"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|s| s.as_str().map(str::to_string).unwrap_or_else(|| s.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let is = |p: &Path| file.as_deref().is_some_and(|f| f == p || f.ends_with(p));
    let place = if is(merged_file) {
        let origin = path
            .get(1)
            .and_then(|id| merged.sources.get(id).map(|src| (id, src)))
            .map(|(id, src)| format!(" ({}/{id} from {})", path[0], short(root, src)))
            .unwrap_or_default();
        format!("{MERGED_LABEL}:{line}{origin}")
    } else if is(image) {
        format!("{}:{line}", short(root, image))
    } else {
        format!("{}:{line}", file.map(|f| f.display().to_string()).unwrap_or_default())
    };
    format!("{place}: {rule} {message}")
}

/// `formations/api.json` rather than the absolute path.
fn short(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_names_rule_line_and_source_file() {
        let merged = Template {
            body: String::new(),
            value: serde_json::Map::new(),
            sources: [("ApiInstance".to_string(), PathBuf::from("/x/formations/api.json"))].into(),
        };
        let item = serde_json::json!({
            "Filename": "/tmp/argos-cfn-lint-1/merged.json",
            "Location": {"Start": {"LineNumber": 340, "ColumnNumber": 9}, "Path": ["Resources", "ApiInstance", "Properties"]},
            "Message": "Additional properties are not allowed ('Foo' was unexpected)",
            "Rule": {"Id": "E3002"}
        });
        let text = describe(
            &item,
            Path::new("/x"),
            Path::new("/x/formations/image.json"),
            Path::new("/tmp/argos-cfn-lint-1/merged.json"),
            &merged,
        );
        assert_eq!(
            text,
            "merged template:340 (Resources/ApiInstance from formations/api.json): E3002 Additional properties are not allowed ('Foo' was unexpected)"
        );
        let item = serde_json::json!({
            "Filename": "/x/formations/image.json",
            "Location": {"Start": {"LineNumber": 12}, "Path": ["Parameters", "VpcId"]},
            "Message": "W2001 unused",
            "Rule": {"Id": "W2001"}
        });
        let text = describe(
            &item,
            Path::new("/x"),
            Path::new("/x/formations/image.json"),
            Path::new("/tmp/m.json"),
            &merged,
        );
        assert_eq!(text, "formations/image.json:12: W2001 W2001 unused");
    }
}
