//! The layout stays a graph without loops: no top-level module reaches, through `crate::`
//! paths, a module that reaches back to it; inside `store/` and `http/console/` no file's
//! module reaches (by `super::` or `crate::` paths) one that reaches back. A new loop fails
//! here, naming the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every source file under `src/<under>` but the tests, by its path under `src/`, with its
/// code before any `#[cfg(test)]` (what tests use does not shape the layout).
fn sources(under: &str) -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src.join(under)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "tests.rs" || name.ends_with("_tests.rs") || !name.ends_with(".rs") {
                continue;
            }
            let relative = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            found.push((relative, code.to_string()));
        }
    }
    found
}

/// Top-level module → the top-level modules its code names, each with a file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (relative, code) in sources("") {
        if ["lib.rs", "main.rs"].contains(&relative.as_str()) {
            continue;
        }
        let module = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
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

/// The module path of a source file: `store/schema/mod.rs` → `[store, schema]`.
fn module_path(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The module paths a piece of code names through `crate::` and `super::` (`use` lists in
/// braces too), from the module `here`.
fn named_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let ident = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = Vec::new();
    let lines: Vec<&str> = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = lines.join("\n");
    for (at, _) in code
        .match_indices("super::")
        .chain(code.match_indices("crate::"))
    {
        // `super::super::` is one path, read from its first `super`.
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut base: Vec<String> = here.to_vec();
        let mut rest = &code[at..];
        if rest.starts_with("crate::") {
            base.clear();
            rest = &rest["crate::".len()..];
        } else {
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
        }
        let mut heads = Vec::new();
        if let Some(list) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = list
                .char_indices()
                .find(|(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth < 0
                })
                .map_or(list.len(), |(i, _)| i);
            heads.extend(
                list[..end]
                    .split(',')
                    .map(|item| ident(item.trim()))
                    .filter(|item| !item.is_empty()),
            );
        } else {
            heads.push(ident(rest));
        }
        for head in heads {
            let mut path = base.clone();
            path.push(head);
            named.push(path);
        }
    }
    named
}

/// Inside `scope` (a folder of `src`): each file's module one level under it → the modules of
/// that level its code names, each with a file that does.
fn imports_within(scope: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (relative, code) in sources(&scope.join("/")) {
        let here = module_path(&relative);
        let Some(module) = here.get(scope.len()).cloned() else {
            continue; // the scope's own mod.rs
        };
        for named in named_paths(&code, &here) {
            let inside = named.len() > scope.len() && named.iter().zip(scope).all(|(a, b)| a == b);
            let target = named.get(scope.len()).cloned().unwrap_or_default();
            if inside && target != module && !target.is_empty() {
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| relative.clone());
            }
        }
    }
    graph
}

#[test]
fn no_module_of_the_store_or_the_console_imports_one_that_imports_it_back() {
    for scope in [&["store"][..], &["http", "console"][..]] {
        let graph = imports_within(scope);
        assert!(graph.len() > 2, "{scope:?} was read: {graph:?}");
        let loops: Vec<String> = graph
            .keys()
            .filter_map(|module| loop_through(&graph, module))
            .map(|modules| format!("{modules:?}"))
            .collect();
        assert!(
            loops.is_empty(),
            "import loops in {scope:?}:\n{}",
            loops.join("\n")
        );
    }
}

#[test]
fn the_path_reader_follows_super_and_braced_lists() {
    let here = module_path("store/schema/mod.rs");
    assert_eq!(here, ["store", "schema"]);
    let named = named_paths(
        "use super::avatars::VIEW;\nuse super::{\n    jobs::X,\n    StoreError,\n};\nlet x = crate::cache::Cache;",
        &here,
    );
    for expected in [
        vec!["store", "avatars"],
        vec!["store", "jobs"],
        vec!["store", "StoreError"],
        vec!["cache"],
    ] {
        assert!(
            named.iter().any(|n| *n == expected),
            "{expected:?} in {named:?}"
        );
    }
    let deeper = named_paths(
        "use super::super::group::G;",
        &module_path("store/ingest/apply.rs"),
    );
    assert_eq!(deeper, vec![vec!["store", "group"]]);
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
