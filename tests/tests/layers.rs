//! The modules of `gemma-core` and `gemma-platform` depend one way.
//!
//! The layer list lives in docs/ARCHITECTURE.md, in the block that follows
//! `<!-- layers -->`: one line per layer, lowest first, `crate: module
//! module ...`. This test reads it, then every `use` declaration and every
//! `crate::`/`super::` path in the two crates' sources (comments and
//! `#[cfg(test)]` items left out), resolves each to the module that defines
//! the item (following `pub use` re-exports), and fails when a module
//! reaches into a layer above its own, when a module is in no layer, or
//! when modules import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source files, as module paths (`["kernels", "ops"]`) to text.
type Tree = BTreeMap<Vec<String>, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `src`, keyed by module path (`lib.rs` is `[]`,
/// `a/mod.rs` is `["a"]`, `a/b.rs` is `["a", "b"]`).
fn read_tree(src: &Path) -> Tree {
    fn walk(dir: &Path, prefix: &[String], out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(path.file_name().unwrap().to_string_lossy().to_string());
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    p.push(name);
                }
                out.insert(p, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = Tree::new();
    walk(src, &[], &mut out);
    out
}

/// The layers of `krate` from the architecture document: module → rank.
fn layers(doc: &str, krate: &str) -> BTreeMap<String, usize> {
    let block = doc
        .split("<!-- layers -->")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a <!-- layers --> block");
    let body = block.split("```").nth(1).expect("a fenced block follows");
    let mut out = BTreeMap::new();
    let mut rank = 0;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((c, modules)) = line.split_once(':') else {
            continue;
        };
        if c.trim() == krate {
            for m in modules.split_whitespace() {
                assert!(
                    out.insert(m.to_string(), rank).is_none(),
                    "{m} listed twice"
                );
            }
            rank += 1;
        }
    }
    out
}

/// `text` without comments and without `#[cfg(test)]` items.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // A `//` outside a string literal starts a comment.
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    // Drop each `#[cfg(test)]` item: up to its `;` or its matching `}`.
    let mut s = out;
    while let Some(at) = s.find("#[cfg(test)]") {
        let rest = &s[at..];
        let semi = rest.find(';').unwrap_or(usize::MAX);
        let brace = rest.find('{').unwrap_or(usize::MAX);
        let end = if semi < brace {
            semi + 1
        } else {
            let mut depth = 0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices().skip(brace) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        };
        s.replace_range(at..at + end, "");
    }
    s
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}}`) into paths.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn parse(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let s = s.trim();
        if let Some(open) = s.find('{') {
            let head: Vec<String> = s[..open]
                .split("::")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            let inner = &s[open + 1..s.rfind('}').unwrap_or(s.len())];
            let mut p = prefix.to_vec();
            p.extend(head);
            // Split the group at top-level commas.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parse(&inner[start..i], &p, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parse(&inner[start..], &p, out);
        } else if !s.is_empty() {
            let s = s.split(" as ").next().unwrap();
            let mut p = prefix.to_vec();
            p.extend(
                s.split("::")
                    .map(str::trim)
                    .filter(|x| !x.is_empty() && *x != "self" && *x != "*")
                    .map(String::from),
            );
            out.push(p);
        }
    }
    let mut out = vec![];
    parse(tree, &[], &mut out);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a module's code names: expanded `use` declarations (with
/// whether they are `pub use` re-exports) and inline `crate::`/`super::`
/// paths.
fn paths(code: &str) -> Vec<(Vec<String>, bool)> {
    let mut out = vec![];
    // `use` declarations start a statement: after `;`, a brace, an
    // attribute, `pub` or `pub(crate)`, or at the start of the file.
    let mut inline = code.to_string();
    let mut from = 0;
    while let Some(found) = code[from..].find("use ") {
        let at = from + found;
        from = at + 4;
        let before = code[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with("pub(crate)");
        let starts = before.is_empty() || public || before.ends_with([';', '{', '}', ']']);
        if !starts || code[..at].ends_with(is_ident) {
            continue;
        }
        let end = code[from..].find(';').map_or(code.len(), |e| from + e);
        for p in expand_use(&code[from..end]) {
            out.push((p, public));
        }
        inline.replace_range(at..end, &" ".repeat(end - at));
        from = end;
    }
    // Inline paths elsewhere in the code.
    for head in ["crate::", "super::"] {
        let mut rest = inline.as_str();
        while let Some(at) = rest.find(head) {
            let before = rest[..at].chars().next_back().unwrap_or(' ');
            let tail = &rest[at..];
            let len = tail
                .char_indices()
                .find(|&(_, c)| !(is_ident(c) || c == ':'))
                .map_or(tail.len(), |(i, _)| i);
            if !is_ident(before) && before != ':' {
                let p: Vec<String> = tail[..len]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                out.push((p, false));
            }
            rest = &tail[len.max(1)..];
        }
    }
    out
}

/// Resolves the path `p` named in module `from` to the module defining its
/// item, following `pub use` re-exports; `None` for other crates.
fn resolve(tree: &Tree, from: &[String], p: &[String], depth: usize) -> Option<Vec<String>> {
    let (mut at, segs): (Vec<String>, &[String]) = match p.first()?.as_str() {
        "crate" => (vec![], &p[1..]),
        "super" => {
            let mut m = from.to_vec();
            let mut i = 0;
            while p.get(i).map(String::as_str) == Some("super") {
                m.pop();
                i += 1;
            }
            (m, &p[i..])
        }
        "self" => (from.to_vec(), &p[1..]),
        // A child module named relatively (`use kv_cache::KvCache` in mod.rs).
        first => {
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !tree.contains_key(&child) {
                return None;
            }
            (child, &p[1..])
        }
    };
    for seg in segs {
        let mut child = at.clone();
        child.push(seg.clone());
        if tree.contains_key(&child) {
            at = child;
            continue;
        }
        // Not a module: an item of `at`, perhaps re-exported from elsewhere.
        if depth < 8 {
            let code = code_only(&tree[&at]);
            for (target, public) in paths(&code) {
                if public && target.last() == Some(seg) && target.len() > 1 {
                    if let Some(r) = resolve(tree, &at, &target, depth + 1) {
                        return Some(r);
                    }
                }
            }
        }
        return Some(at);
    }
    Some(at)
}

/// Module → modules its code imports from (itself and the crate root left
/// out). A `pub use` re-export is the module's interface, not a use of the
/// item by its code: a `mod.rs` that publishes its children's items while
/// they use its types is a facade, not a circle.
fn imports(tree: &Tree) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut graph = BTreeMap::new();
    for (module, text) in tree {
        let mut deps = BTreeSet::new();
        for (p, public) in paths(&code_only(text)) {
            if public {
                continue;
            }
            if let Some(t) = resolve(tree, module, &p, 0) {
                if !t.is_empty() && &t != module {
                    deps.insert(t);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// Upward imports (`module -> target`), and modules in no layer.
fn violations(tree: &Tree, ranks: &BTreeMap<String, usize>) -> Vec<String> {
    let mut out = vec![];
    let rank = |m: &[String]| m.first().and_then(|top| ranks.get(top)).copied();
    for (module, deps) in imports(tree) {
        if module.is_empty() {
            continue;
        }
        let Some(r) = rank(&module) else {
            out.push(format!("{} is in no layer", module.join("::")));
            continue;
        };
        for d in deps {
            if rank(&d).is_some_and(|rd| rd > r) {
                out.push(format!(
                    "{} imports {}, a layer above it",
                    module.join("::"),
                    d.join("::")
                ));
            }
        }
    }
    out
}

/// A circle of modules importing each other, if any.
fn cycle(tree: &Tree) -> Option<Vec<String>> {
    let graph = imports(tree);
    fn visit(
        m: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == m).unwrap();
                return Some(stack[at..].iter().map(|s| s.join("::")).collect());
            }
            _ => {}
        }
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, &graph, &mut state, &mut vec![]) {
            return Some(c);
        }
    }
    None
}

#[test]
fn core_and_platform_depend_one_way_without_cycles() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for krate in ["core", "platform"] {
        let tree = read_tree(&root().join(krate).join("src"));
        let ranks = layers(&doc, krate);
        assert!(ranks.len() >= 5, "{krate}: no layers found in the document");
        let bad = violations(&tree, &ranks);
        assert!(bad.is_empty(), "{krate}:\n{}", bad.join("\n"));
        assert_eq!(cycle(&tree), None, "{krate}: modules import each other");
    }
}

/// The checker itself: on a small tree it finds an upward import, a module
/// in no layer and a circle, through `use` groups, inline paths, `super`
/// and re-exports, and ignores comments and test modules.
#[test]
fn the_checker_finds_what_it_is_for() {
    let m = |p: &[&str], text: &str| (p.iter().map(|s| s.to_string()).collect(), text.to_string());
    let mut tree: Tree = [
        m(&[], "pub mod low; pub mod high;"),
        m(&["low"], "pub mod a; pub mod b; pub use a::Thing;"),
        m(
            &["low", "a"],
            "pub struct Thing; // crate::high::Top in a comment\n",
        ),
        m(
            &["low", "b"],
            "use super::{a::Thing, Thing as T};\n#[cfg(test)]\nmod t { use crate::high::Top; }\n",
        ),
        m(
            &["high"],
            "pub struct Top; fn f() -> crate::low::Thing { todo!() }",
        ),
    ]
    .into_iter()
    .collect();
    // A facade: `low` publishes `a`'s item while `a` uses `low`'s own.
    tree.insert(
        vec!["low".into(), "a".into()],
        "pub struct Thing; fn f(_: super::Own) {}".into(),
    );
    tree.insert(
        vec!["low".into()],
        "pub mod a; pub mod b; pub use a::Thing; pub struct Own;".into(),
    );
    let doc = "<!-- layers -->\n```\nx: low\nx: high\n```\n";
    let ranks = layers(doc, "x");
    assert!(
        violations(&tree, &ranks).is_empty(),
        "{:?}",
        violations(&tree, &ranks)
    );
    assert_eq!(cycle(&tree), None);
    // An upward import, inline.
    tree.insert(
        vec!["low".into(), "b".into()],
        "fn g() { let _ = crate::high::Top; }".into(),
    );
    assert_eq!(
        violations(&tree, &ranks),
        ["low::b imports high, a layer above it"]
    );
    // A circle between two modules of one layer.
    tree.insert(
        vec!["low".into(), "b".into()],
        "use super::a::Thing;".into(),
    );
    tree.insert(
        vec!["low".into(), "a".into()],
        "use super::b::Other;".into(),
    );
    assert!(cycle(&tree).is_some());
    // A module the document does not list.
    tree.insert(vec!["extra".into()], String::new());
    assert!(violations(&tree, &ranks).contains(&"extra is in no layer".to_string()));
}
