//! The shape of the code, checked: no import cycles between the top-level modules of `shared` or
//! of any worker crate, no core module of `shared` reaching up into its adapters, and no comment
//! citing a document that is not in the repository.
//!
//! The import graph is read from the source text: every `crate::` path (in `use` items and in
//! code, groups like `crate::{a, b}` included) outside comments and outside the `#[cfg(test)] mod
//! tests` of a file. A node is a top-level module (`src/<name>.rs` or `src/<name>/`); `super::`
//! paths are left out because below the top level they stay inside their own top-level module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules of `shared` that may import `shared::adapter`: the adapters themselves, the
/// contract suites that exercise them, and the start-up code that opens a stack.
const MAY_IMPORT_ADAPTERS: &[&str] = &["adapter", "testing", "cli"];

/// Where one module first imports another: `(file, line)`.
type Witness = (String, usize);

/// The import graph of one crate: edges between top-level modules, each with its first witness.
#[derive(Debug, Default)]
struct Graph {
    edges: BTreeMap<(String, String), Witness>,
}

impl Graph {
    fn add(&mut self, from: &str, to: &str, at: Witness) {
        if from != to {
            self.edges
                .entry((from.to_owned(), to.to_owned()))
                .or_insert(at);
        }
    }

    fn successors(&self, node: &str) -> Vec<&str> {
        self.edges
            .keys()
            .filter(|(f, _)| f == node)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    /// The strongly connected components with more than one module (each one a cycle), found
    /// with Tarjan's algorithm.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct State<'g> {
            g: &'g Graph,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            next: usize,
            out: Vec<Vec<String>>,
        }
        fn visit<'g>(s: &mut State<'g>, v: &'g str) {
            s.index.insert(v, s.next);
            s.low.insert(v, s.next);
            s.next += 1;
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in s.g.successors(v) {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    s.out.push(component);
                }
            }
        }
        let nodes: BTreeSet<&str> = self
            .edges
            .keys()
            .flat_map(|(f, t)| [f.as_str(), t.as_str()])
            .collect();
        let mut s = State {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in nodes {
            if !s.index.contains_key(v) {
                visit(&mut s, v);
            }
        }
        s.out
    }

    /// A readable account of a cycle: every edge inside it with where it is made.
    fn describe(&self, component: &[String]) -> String {
        let mut lines = Vec::new();
        for ((f, t), (file, line)) in &self.edges {
            if component.contains(f) && component.contains(t) {
                lines.push(format!("  {f} -> {t}  ({file}:{line})"));
            }
        }
        lines.join("\n")
    }
}

/// The code of a file without its comments and without its trailing `#[cfg(test)] mod tests`.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, raw) in lines.iter().enumerate() {
        if raw.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let mut line = (*raw).to_owned();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_owned();
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*") {
            match line[start..].find("*/") {
                Some(end) => line.replace_range(start..start + end + 2, ""),
                None => {
                    line.truncate(start);
                    in_block = true;
                }
            }
        }
        if let Some(c) = line.find("//") {
            line.truncate(c);
        }
        out.push((i + 1, line));
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment after each `crate::` in one line of code.
fn crate_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a::X, b, c::{d, e}}`: the first segment of each item at depth one.
            let mut depth = 0usize;
            let mut item_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if is_ident(c) && item_start && depth == 0 => ident.push(c),
                    _ => {
                        if !ident.is_empty() {
                            out.push(std::mem::take(&mut ident));
                            item_start = false;
                        }
                    }
                }
            }
            if !ident.is_empty() {
                out.push(ident);
            }
        } else {
            let ident: String = after.chars().take_while(|&c| is_ident(c)).collect();
            if !ident.is_empty() {
                out.push(ident);
            }
        }
    }
    out
}

/// The top-level modules of a crate whose sources are under `src`: `<name>.rs` files (the crate
/// roots `lib.rs` and `main.rs` aside) and `<name>/` folders.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            out.insert(name.to_owned());
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
            && stem != "main"
        {
            out.insert(stem.to_owned());
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || matches!(name, "target" | "node_modules" | "cdk.out") {
            continue;
        }
        if path.is_dir() {
            rs_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The import graph of the crate whose sources are `files` (path relative to `src`, text).
fn graph_of(modules: &BTreeSet<String>, files: &[(PathBuf, String)], label: &str) -> Graph {
    let mut g = Graph::default();
    for (rel, text) in files {
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let from = first.strip_suffix(".rs").unwrap_or(first);
        // Crate roots wire everything together; a test-only file is not part of the build.
        if from == "lib" || from == "main" || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        for (n, line) in code_lines(text) {
            for to in crate_targets(&line) {
                if modules.contains(&to) {
                    g.add(from, &to, (format!("{label}/{}", rel.display()), n));
                }
            }
        }
    }
    g
}

fn crate_sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            (p.strip_prefix(src).expect("under src").to_path_buf(), text)
        })
        .collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `shared/src` and every `workers/*/src`, with a label for messages.
fn crates() -> Vec<(String, PathBuf)> {
    let root = repo_root();
    let mut out = vec![("shared/src".to_owned(), root.join("shared/src"))];
    let mut workers: Vec<_> = std::fs::read_dir(root.join("workers"))
        .expect("workers/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    workers.sort();
    for w in workers {
        let name = w.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        out.push((format!("workers/{name}/src"), w.join("src")));
    }
    out
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let mut failures = Vec::new();
    let mut crates_seen = 0;
    for (label, src) in crates() {
        crates_seen += 1;
        let g = graph_of(&top_level_modules(&src), &crate_sources(&src), &label);
        for cycle in g.cycles() {
            failures.push(format!(
                "{label}: cycle between {}\n{}",
                cycle.join(", "),
                g.describe(&cycle)
            ));
        }
    }
    assert!(
        crates_seen >= 5,
        "expected shared and the workers, saw {crates_seen}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_core_modules_do_not_import_adapters() {
    let src = repo_root().join("shared/src");
    let g = graph_of(&top_level_modules(&src), &crate_sources(&src), "shared/src");
    let upward: Vec<String> = g
        .edges
        .iter()
        .filter(|((f, t), _)| t == "adapter" && !MAY_IMPORT_ADAPTERS.contains(&f.as_str()))
        .map(|((f, _), (file, line))| format!("  {f} imports adapter ({file}:{line})"))
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
    // The check sees the imports it is meant to see.
    assert!(
        g.edges
            .contains_key(&("cli".to_owned(), "adapter".to_owned())),
        "cli opens the stacks, so the graph must show cli -> adapter"
    );
}

#[test]
fn no_comment_cites_a_document_outside_the_repository() {
    // Built from parts so that this file does not cite them itself.
    let needles = [
        ["DES", "IGN"].concat(),
        ["STY", "LE"].concat(),
        ["refer", "ence/"].concat(),
    ];
    let mut files = Vec::new();
    rs_files(&repo_root(), &mut files);
    assert!(files.len() > 100, "found only {} .rs files", files.len());
    let mut hits = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (i, line) in text.lines().enumerate() {
            let comment = match (line.find("//"), line.find("/*")) {
                (Some(a), Some(b)) => &line[a.min(b)..],
                (Some(a), None) | (None, Some(a)) => &line[a..],
                (None, None) if line.trim_start().starts_with('*') => line,
                (None, None) => continue,
            };
            if let Some(n) = needles.iter().find(|n| comment.contains(n.as_str())) {
                hits.push(format!("  {}:{}: cites {n}", path.display(), i + 1));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "comments citing outside files:\n{}",
        hits.join("\n")
    );
}

/// The reader and the cycle search on hand-made sources, so a regression in them cannot pass
/// silently as "no cycles".
#[test]
fn the_checker_finds_a_planted_cycle_and_ignores_comments_and_tests() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(str::to_owned).into();
    let files = vec![
        (PathBuf::from("a.rs"), "use crate::{b::X, c};\n".to_owned()),
        (
            PathBuf::from("b/mod.rs"),
            "fn f() { crate::a::g() }\n// crate::d::h\n".to_owned(),
        ),
        (
            PathBuf::from("c.rs"),
            "/* crate::a */ use std::fmt;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n"
                .to_owned(),
        ),
        (PathBuf::from("d/tests.rs"), "use crate::a;\n".to_owned()),
        (PathBuf::from("lib.rs"), "use crate::d;\n".to_owned()),
    ];
    let g = graph_of(&modules, &files, "fake");
    let edges: BTreeSet<(String, String)> = g.edges.keys().cloned().collect();
    let want: BTreeSet<(String, String)> = [("a", "b"), ("a", "c"), ("b", "a")]
        .map(|(f, t)| (f.to_owned(), t.to_owned()))
        .into();
    assert_eq!(edges, want);
    assert_eq!(g.cycles(), vec![vec!["a".to_owned(), "b".to_owned()]]);
    assert!(g.describe(&g.cycles()[0]).contains("fake/b/mod.rs:1"));
    assert_eq!(
        crate_targets("x::crate::y; $crate::z"),
        vec!["z".to_owned()]
    );
}
