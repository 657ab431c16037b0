//! The shape of the library: no import circle between its modules, and the binary's share of
//! the work (the train command holds no epoch loop, no device match, no checkpoint writing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// Every `.rs` file under `dir`.
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

/// The text without `//` comments (doc links name modules without depending on them).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The library's top-level modules and, for each, the other top-level modules its code names
/// (`crate::m`, `crate::{m, ..}`; `crate::Error` and `crate::Result` are `error`'s).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if ["main", "lib", "commands"].contains(&top.as_str()) {
            continue; // the binary and the crate root
        }
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap()]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap().trim())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap(),
                ],
            };
            for name in names {
                let module = match name {
                    "Error" | "Result" => "error",
                    other => other,
                };
                if !module.is_empty() && module != top {
                    deps.insert(module.to_string());
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A path of imports from `from` back to itself, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        for next in &graph[path.last().unwrap()] {
            if next == from {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph();
    assert!(graph.len() > 20, "found the modules: {graph:?}");
    assert!(graph["run"].contains("train") && graph["train"].contains("network"));
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_train_command_leaves_the_work_to_the_library() {
    let cli = std::fs::read_to_string(src().join("commands.rs")).unwrap();
    let start = cli.find("\nfn train(").expect("the train command");
    let end = start + cli[start..].find("\n}\n").unwrap();
    let train = code(&cli[start..end]);
    for (what, pattern) in [
        ("an epoch loop", "while "),
        ("an epoch loop", "loop {"),
        ("an epoch loop", "for "),
        ("a device match", "match device"),
        ("checkpoint writing", "checkpoint::save"),
        ("checkpoint writing", "CheckpointRef"),
    ] {
        assert!(
            !train.contains(pattern),
            "the train command holds {what}: `{pattern}`"
        );
    }
    assert_eq!(
        train.matches(".train(").count(),
        1,
        "one library call trains"
    );
    let mut files = Vec::new();
    rust_files(&src().join("commands"), &mut files);
    files.push(src().join("commands.rs"));
    files.push(src().join("main.rs"));
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for pattern in [
            "checkpoint::save",
            "CheckpointRef",
            "match device",
            "run_epoch(",
        ] {
            assert!(
                !text.contains(pattern),
                "{} holds `{pattern}`",
                file.display()
            );
        }
    }
}
