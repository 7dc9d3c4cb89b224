//! The records' reference, `docs/records.md`, names every field the program writes.
//!
//! The field names are taken from the golden outputs (`tests/golden/*.jsonl`, the records of
//! every fixture capture), per record type, nested `transitions[]` objects included; each must
//! appear as a backquoted name in that record type's section of the document. The negative
//! control removes one line from the document and checks that the same comparison then fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Objects whose keys are data (event names, measured facts), not field names.
const DATA_OBJECTS: [&str; 4] = ["why", "analysis_counts", "facts", "settings"];

/// Record type → every field name written, as `name` or `parent[].name` for objects in lists.
fn golden_fields() -> BTreeMap<String, BTreeSet<String>> {
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let dir = Path::new(ROOT).join("tests/golden");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        files += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let obj = v.as_object().unwrap();
            let ty = obj["type"].as_str().unwrap().to_string();
            let set = fields.entry(ty).or_default();
            for (k, val) in obj {
                set.insert(k.clone());
                if DATA_OBJECTS.contains(&k.as_str()) {
                    continue;
                }
                for item in val.as_array().into_iter().flatten() {
                    for inner in item.as_object().into_iter().flat_map(|o| o.keys()) {
                        set.insert(format!("{k}[].{inner}"));
                    }
                }
            }
        }
    }
    assert!(files >= 20, "only {files} golden files");
    fields
}

/// The section of `doc` about records of type `ty`: from its `## \`"type": "TY"\`` heading to
/// the next `## ` heading.
fn section<'a>(doc: &'a str, ty: &str) -> Option<&'a str> {
    let head = format!("## `\"type\": \"{ty}\"`");
    let start = doc.find(&head)?;
    let rest = &doc[start + head.len()..];
    Some(&rest[..rest.find("\n## ").unwrap_or(rest.len())])
}

/// Every (type, field) of `fields` that `doc` does not document.
fn undocumented(doc: &str, fields: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (ty, names) in fields {
        let Some(sec) = section(doc, ty) else {
            missing.push(format!("{ty}: no section"));
            continue;
        };
        for name in names {
            if !sec.contains(&format!("`{name}`")) {
                missing.push(format!("{ty}.{name}"));
            }
        }
    }
    missing
}

#[test]
fn every_golden_field_is_documented() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/records.md")).unwrap();
    let fields = golden_fields();
    for ty in ["packet", "conn", "http", "ws"] {
        assert!(
            fields.contains_key(ty),
            "no {ty} records in the golden files"
        );
    }
    let total: usize = fields.values().map(|s| s.len()).sum();
    assert!(total > 60, "only {total} field names found");
    let missing = undocumented(&doc, &fields);
    assert!(missing.is_empty(), "not in docs/records.md: {missing:?}");

    // Negative control: without the line documenting `acks_frame`, the check names it.
    let cut: String = doc
        .lines()
        .filter(|l| !l.starts_with("| `acks_frame`"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        cut.len() < doc.len(),
        "the control line is gone from the document"
    );
    assert_eq!(undocumented(&cut, &fields), ["packet.acks_frame"]);
}

/// The README and `--help` point at the document inside the project, never at a file outside it.
#[test]
fn the_reference_is_inside_the_project() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/records.md)"),
        "README links docs/records.md"
    );
    assert!(
        !readme.contains("../shared/CONTRACT.md"),
        "README points outside the project"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["replay", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("docs/records.md"), "{help}");
    assert!(!help.contains("CONTRACT"), "{help}");
}
