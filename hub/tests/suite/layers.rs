//! The hub's layering, checked from its source: every `crate::<module>` path in `src/` is an
//! edge between top-level modules, and the edges must point down the layers (http → session
//! and bus → node → cluster → registry → leaves), with no cycle among the leaves. The lower
//! layers get narrow handles, never the node itself nor the HTTP framework.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first. A module may use modules of lower layers, and leaves may use each
/// other as long as they form no cycle.
const LAYERS: &[&[&str]] = &[
    &["http"],
    &["session", "bus"],
    &["node"],
    &["cluster"],
    &["registry"],
];

/// Modules that must name neither the node type nor axum.
const NARROW: &[&str] = &["cluster", "registry", "limits"];

/// Macros exported at the crate root, and the modules that define them.
const ROOT_MACROS: &[(&str, &str)] = &[("request_span", "telemetry")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root and the binary).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Top-level modules named by `crate::<name>` in `text`, comments left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            // `$crate::` in a macro is the same path.
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Module → the modules it uses, for the whole crate.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let deps = g.entry(m.clone()).or_default();
        for name in crate_paths(&text) {
            let target = ROOT_MACROS
                .iter()
                .find(|(mac, _)| *mac == name)
                .map_or(name.clone(), |(_, home)| home.to_string());
            if target != m && modules.contains(&target) {
                deps.insert(target);
            }
        }
    }
    g
}

/// The layer of a module: its index in [`LAYERS`], or the number of layers for a leaf.
fn layer(m: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&m))
        .unwrap_or(LAYERS.len())
}

/// A cycle in `g`, if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph();
    assert!(g.len() > 10, "found too few modules: {:?}", g.keys());
    if let Some(cycle) = find_cycle(&g) {
        panic!("hub/src modules form a cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let mut wrong = Vec::new();
    for (m, deps) in graph() {
        for d in deps {
            let (from, to) = (layer(&m), layer(&d));
            if to < from || (to == from && from < LAYERS.len()) {
                wrong.push(format!("{m} → {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges that point up or sideways: {wrong:?}"
    );
}

#[test]
fn lower_layers_name_neither_the_node_nor_axum() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let Some(m) = module_of(&f) else { continue };
        if !NARROW.contains(&m.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let names_node = code.contains("crate::node") || contains_word(code, "Node");
            if names_node || code.contains("axum") {
                wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "lower layers reach up: {wrong:#?}");
}

fn contains_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[test]
fn the_checker_sees_what_it_checks() {
    let paths = crate_paths("use crate::a::b; // crate::c\n$crate::d!(x)");
    assert_eq!(paths, BTreeSet::from(["a".to_string(), "d".to_string()]));
    let g = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert!(find_cycle(&g).is_some());
    assert!(contains_word("Arc<Node>", "Node"));
    assert!(!contains_word("NodeId node_id", "Node"));
}
