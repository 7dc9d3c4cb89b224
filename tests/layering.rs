//! The layers of `src/lib.rs`, checked on the source text: a plain look at every `crate::…`
//! path in `src/**/*.rs` (comments left out), the way `grep` would.
//!
//! * Only `cli.rs` (and `main.rs`, which is outside the library) may name `cli`.
//! * `capture/`, `decode/`, `tcp/`, `http/` and `tls/` name none of `engine`, `pipeline`,
//!   `output`, `report`, `commands` or `cli`: they only yield frames, segments, connections and
//!   messages.
//! * `http/` and `tls/` are one level, side by side above `tcp/`: neither names the other, and
//!   nothing below them names either.
//! * `types.rs` names nothing of the crate.
//! * The top-level modules import each other without a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `capture` for `src/capture/live.rs`, `engine` for
/// `src/engine.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// The source without comments, line for line.
fn code_only(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut code = line;
        if in_block {
            match code.find("*/") {
                Some(end) => {
                    code = &code[end + 2..];
                    in_block = false;
                }
                None => code = "",
            }
        }
        if let Some(start) = code.find("/*") {
            in_block = !code[start..].contains("*/");
            code = &code[..start];
        }
        if let Some(comment) = code.find("//") {
            code = &code[..comment];
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules a file names as `crate::NAME` or in `crate::{A, B::…}`, outside
/// comments, with the line of each first mention.
fn crate_paths(text: &str) -> BTreeMap<String, usize> {
    let code = code_only(text);
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeMap::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i;
        from = at + 7;
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + 7..];
        let names = if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level: after `{` and after each `,` outside
            // inner braces.
            let mut names = vec![ident(group)];
            let mut depth = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => names.push(ident(&group[k + 1..])),
                    _ => {}
                }
            }
            names
        } else {
            vec![ident(rest)]
        };
        for name in names.into_iter().filter(|n| !n.is_empty() && n != "self") {
            found.entry(name).or_insert(line);
        }
    }
    found
}

#[test]
fn the_scan_sees_paths_and_groups_but_not_comments() {
    let text = "use crate::a::B;\n// use crate::hidden;\nuse crate::{\n    c::D,\n    e::{F, g::H},\n};\nlet x = mycrate::z; /* crate::y */\nfn f() { crate::i(); }\n";
    let found: Vec<(String, usize)> = crate_paths(text).into_iter().collect();
    let want = [("a", 1), ("c", 3), ("e", 3), ("i", 8)];
    let want: Vec<(String, usize)> = want.iter().map(|(n, l)| (n.to_string(), *l)).collect();
    assert_eq!(found, want);
}

/// What each top-level module names: module -> (named module -> first "file:line").
fn import_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for (name, line) in crate_paths(&text) {
            if name != module {
                let at = format!("{}:{line}", file.strip_prefix(&src).unwrap().display());
                uses.entry(name).or_insert(at);
            }
        }
    }
    graph
}

/// The imports against the layering, as "src/FILE:LINE: A imports crate::B".
fn wrong_imports(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    let below = ["capture", "decode", "tcp", "http", "tls", "http2"];
    // The application layers, side by side: each may use what is under them, never each other,
    // and nothing under them may use them.
    let apps = ["http", "tls"];
    let under_apps = ["capture", "decode", "tcp", "types"];
    let above = ["engine", "pipeline", "output", "report", "commands", "cli"];
    for (module, uses) in graph {
        for (name, at) in uses {
            let bad = (name == "cli" && module != "cli" && module != "main")
                || (below.contains(&module.as_str()) && above.contains(&name.as_str()))
                || module == "types"
                || (apps.contains(&module.as_str())
                    && apps.contains(&name.as_str())
                    && module != name)
                || (under_apps.contains(&module.as_str()) && apps.contains(&name.as_str()))
                // HTTP/2 is under both: HTTP/1 hands an h2c upgrade over to it, TLS may hand
                // it decrypted bytes; it names neither, and nothing under them names it.
                || (module == "http2" && apps.contains(&name.as_str()))
                || (under_apps.contains(&module.as_str()) && name == "http2");
            if bad {
                wrong.push(format!("src/{at}: {module} imports crate::{name}"));
            }
        }
    }
    wrong
}

#[test]
fn layers_import_only_downward() {
    let graph = import_graph();
    assert!(
        graph.contains_key("engine") && graph.contains_key("tcp") && graph.contains_key("tls"),
        "{graph:?}"
    );
    let wrong = wrong_imports(&graph);
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// The control: each kind of wrong import, added to the real graph, is found.
#[test]
fn each_wrong_import_is_found() {
    let real = import_graph();
    for (module, name) in [
        ("tls", "http"),
        ("http", "tls"),
        ("tcp", "tls"),
        ("tls", "engine"),
        ("http", "output"),
        ("types", "record"),
        ("engine", "cli"),
        ("http2", "http"),
        ("tcp", "http2"),
        ("http2", "engine"),
    ] {
        let mut g = real.clone();
        g.entry(module.into())
            .or_default()
            .insert(name.into(), format!("{module}.rs:1"));
        assert_eq!(wrong_imports(&g).len(), 1, "{module} -> {name}");
    }
}

#[test]
fn no_import_loops_between_modules() {
    let graph = import_graph();
    // Depth-first search for a back edge; the loop found is printed whole.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == m) {
            let mut cycle = path[start..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flat_map(|u| u.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            panic!("an import loop:\n{}", steps.join("\n"));
        }
    }
}
