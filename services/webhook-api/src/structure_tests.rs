//! The layout stays a graph without loops: no top-level module reaches, through `crate::`
//! paths, a module that reaches back to it. A new loop fails here, naming the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names, each with a file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let name = path.file_name().unwrap().to_string_lossy();
            let skipped = ["lib.rs", "main.rs"].contains(&relative.as_str())
                || name == "tests.rs"
                || name.ends_with("_tests.rs")
                || !name.ends_with(".rs");
            if skipped {
                continue;
            }
            let module = relative
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            // What tests use does not shape the layout.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let named: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !named.is_empty() && named != module {
                        graph
                            .entry(module.clone())
                            .or_default()
                            .entry(named)
                            .or_insert_with(|| relative.clone());
                    }
                }
            }
        }
    }
    graph
}

/// A loop through `from`, as the modules in order, if there is one.
fn loop_through(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        target: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flat_map(|n| n.keys()) {
            if next == target {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, target, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_string()];
    walk(graph, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() > 10, "the source tree was read: {graph:?}");
    let loops: Vec<String> = graph
        .keys()
        .filter_map(|module| loop_through(&graph, module))
        .map(|modules| {
            let mut hops: Vec<String> = modules
                .iter()
                .zip(modules.iter().cycle().skip(1))
                .map(|(a, b)| format!("{a} -> {b} ({})", graph[a][b]))
                .collect();
            hops.dedup();
            hops.join(", ")
        })
        .collect();
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn the_domain_names_nothing_but_itself() {
    let graph = imports();
    for domain in ["avatar", "fal"] {
        let named: Vec<&String> = graph
            .get(domain)
            .into_iter()
            .flat_map(|n| n.keys())
            .filter(|m| !["avatar", "fal"].contains(&m.as_str()))
            .collect();
        assert!(named.is_empty(), "{domain} reaches out to {named:?}");
    }
}
