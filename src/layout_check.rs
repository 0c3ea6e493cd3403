//! Checks the module DAG stated in the crate docs: sibling modules (children of the same
//! parent) never use each other in a circle. A module may use its own children and its
//! ancestors' re-exports; those edges are not sibling edges and are not counted.
//!
//! Why a test that reads the source: rustc accepts import circles between modules, so nothing
//! else would notice a new one. The parse is deliberately plain: every `crate::a::b` and
//! `super::x` path outside comments, resolved to the longest known module prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Sibling edges `(parent, from, to)` allowed although they close a circle: none today. An
/// entry would need its reason beside it; the test fails on any circle not listed here.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    parts
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(Vec<String>, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            if rel.starts_with("bin") {
                continue; // the binary is another crate
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            out.push((module_path(rel), text));
        }
    }
}

/// `crate::a::b::{c, d}` and `super::x` paths of one file, as absolute segment lists.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (start, kw) in [("crate::", true), ("super::", false)] {
            let mut rest = line;
            while let Some(i) = rest.find(start) {
                let before = rest[..i].chars().next_back();
                let after = &rest[i + start.len()..];
                rest = after;
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let segs: Vec<String> = after
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                let mut path: Vec<String> = if kw {
                    Vec::new()
                } else {
                    // `super` is the parent module, for `x/y.rs` and `x/y/mod.rs` alike.
                    module[..module.len().saturating_sub(1)].to_vec()
                };
                path.extend(segs);
                // A grouped `crate::{a, b}` names several top-level modules.
                if kw && after.starts_with('{') {
                    let group: String = after[1..].chars().take_while(|c| *c != '}').collect();
                    for item in group.split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            refs.push(vec![name]);
                        }
                    }
                }
                refs.push(path);
            }
        }
    }
    refs
}

/// Sibling edges, keyed by parent module path.
fn sibling_edges() -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, text) in &files {
        for r in references(module, text) {
            // Longest known module prefix of the reference.
            let Some(target) = (1..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // Same module, a child, or an ancestor: not a sibling edge.
            if common == module.len() || common == target.len() {
                continue;
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .insert((module[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// A circle among `edges`, if any (depth-first search).
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in next.keys() {
        if let Some(c) = visit(n, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn sibling_modules_form_a_dag() {
    let all = sibling_edges();
    // The parse finds the edges it must: a check that sees nothing proves nothing.
    assert!(all[&Vec::new()].contains(&("router".to_string(), "quota".to_string())));
    let mut cycles = Vec::new();
    for (parent, edges) in &all {
        let kept: BTreeSet<(String, String)> = edges
            .iter()
            .filter(|(a, b)| {
                !ALLOWED.contains(&(parent.join("::").as_str(), a.as_str(), b.as_str()))
            })
            .cloned()
            .collect();
        if let Some(c) = find_cycle(&kept) {
            cycles.push(format!(
                "in crate::{}: {}",
                parent.join("::"),
                c.join(" -> ")
            ));
        }
    }
    assert!(cycles.is_empty(), "module circles: {cycles:#?}");
}
