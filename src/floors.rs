//! The test that holds the crate to its floors: every `crate::<module>` path in `src/` (and
//! `argos::<module>` in `main.rs`) must name the module's own floor or one below it.

use std::collections::BTreeMap;
use std::path::Path;

use super::FLOORS;

/// The top-level module a file under `src/` belongs to (`bot/jobs.rs` → `bot`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src/");
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string()
}

/// The top-level modules a file names through `crate::` (or `argos::`), doc links included: a
/// link to a floor above is a dependency too, for whoever reads the module. `aws_call!` is
/// exported at the crate's root but belongs to `cloud`.
fn imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for code in code.lines() {
        for prefix in ["crate::", "argos::"] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(if name == "aws_call" { "cloud".to_string() } else { name });
                }
                rest = after;
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_from_a_floor_above_its_own() {
    let floor_of: BTreeMap<&str, usize> = FLOORS
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i)))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut upward = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(&src).expect("under src/");
        let module = module_of(rel);
        if module == "lib" || module == "floors" {
            continue;
        }
        let Some(&own) = floor_of.get(module.as_str()) else {
            panic!(
                "src/{} is in no floor: add its module to FLOORS in lib.rs",
                rel.display()
            );
        };
        let code = std::fs::read_to_string(&path).expect("readable source");
        for used in imports(&code) {
            match floor_of.get(used.as_str()) {
                Some(&floor) if floor < own => upward.push(format!(
                    "src/{} ({module}, floor {}) imports {used} (floor {})",
                    rel.display(),
                    own + 1,
                    floor + 1
                )),
                Some(_) => {}
                None => panic!("src/{} names crate::{used}, which is in no floor", rel.display()),
            }
        }
    }
    assert!(upward.is_empty(), "imports from a floor above:\n{}", upward.join("\n"));
}

#[test]
fn the_scanner_sees_imports_macros_and_doc_links() {
    let code = "use crate::bot::Bot;\nlet x = crate::aws_call!(a);\n/// [`Port`](crate::platform::Port)\n";
    let want: Vec<String> = ["bot", "cloud", "platform"].map(String::from).to_vec();
    assert_eq!(imports(code), want);
}
