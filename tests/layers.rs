//! Layering of the library, checked from the source text (std only: no dependency on the crate's API,
//! so this test compiles in a second and keeps working while the crate does not).
//!
//! Test 1, `no_module_imports_a_higher_layer`: every file under `src/` belongs to a top-level module
//! (`src/score.rs` and `src/score/*.rs` -> `score`, `src/reverse/seeds.rs` -> `reverse`; `lib.rs`
//! and `main.rs` are the crate root and the binary, the top, and are not checked). Each path that
//! names another top-level module is checked against [`RANKS`]: a module may use modules of lower
//! or equal rank, never a higher one. The paths recognised, after stripping comments (doc comments
//! and intra-doc links included), string and char literals and attributes:
//! - `crate::M::...` and `$crate::M::...` anywhere (in `use` or in expressions), including brace
//!   groups over several lines: `use crate::{data::X, model::{Y, Z}};`;
//! - `super::...` and `self::...` chains, resolved against the file's module path (and inline
//!   `mod x { }` blocks): they only leave the top-level module when they climb to the crate root;
//! - `crate::Name` where `Name` is a re-export of `lib.rs` (`crate::Error` -> `error`) or a
//!   `#[macro_export]` macro (`crate::choices!` -> the module that defines it).
//!
//! Test code is NOT checked: items under `#[cfg(test)] mod NAME { ... }` and files declared by
//! `#[cfg(test)] mod NAME;` (e.g. `src/reverse/tests.rs`) may use higher layers to build fixtures
//! (a model to prune, a run folder to report on). They are listed on stderr as notes. Other
//! `#[cfg(test)]` items (a test-only function outside a test module) are checked like normal code.
//!
//! A top-level module missing from [`RANKS`] is a failure: a new module must be given its layer.
//!
//! Test 2, `no_import_cycle_inside_a_module_folder`: for each folder under `src/` (e.g.
//! `src/reverse/`), the files directly in it (and sub-folders, as one node each) form a graph with an
//! edge A -> B when A names B (`super::b::X`, `crate::reverse::b::X`, or `super::X`/`crate::reverse::X`
//! where `X` is imported into `mod.rs` from `b`, e.g. by `pub use b::X`). The folder's `mod.rs`
//! (its facade, which re-exports from every child) is not a node: references to items defined in it
//! are not edges. A cycle fails the test and is named with the lines that make it.
//!
//! `LAYERS_LIST=1` prints every reference between top-level modules that the scan found.
//!
//! Run without cargo: `rustc --edition 2021 --test tests/layers.rs -o /tmp/layers_test` and run the
//! binary from the repository root (the root is `CARGO_MANIFEST_DIR` at compile time when cargo
//! builds it, else at run time, else the current directory).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, bottom (0) to top. A module may import modules of lower or equal
/// rank (same rank: e.g. `attack` <-> `train`, `control` <-> `interrupt`).
const RANKS: &[(&str, u32)] = &[
    // foundation
    ("util", 0),
    ("error", 0),
    ("choice", 0),
    ("control", 0),
    ("interrupt", 0),
    ("data", 1),
    ("model", 2),
    ("attack", 3),
    ("train", 3),
    ("eval", 3), // accuracy evaluation; `model` (rank 2) must not use it
    ("prune", 4),
    ("score", 5),
    ("reverse", 6),
    ("detect", 7),
    ("report", 8),
    ("scan", 8),     // detect over populations, ROC metrics; its report and plots live in `report`
    ("pipeline", 9), // demo and experiments: compose the pipelines and their writers
    ("cli", 10),
];

fn root() -> PathBuf {
    if let Some(d) = option_env!("CARGO_MANIFEST_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_MANIFEST_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_dir().expect("current directory")
}

fn rank(m: &str) -> Option<u32> {
    RANKS.iter().find(|(n, _)| *n == m).map(|(_, r)| *r)
}

// ---------------------------------------------------------------------------------------------
// Lexing: identifiers and punctuation with line numbers; comments and literals dropped.

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}
fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(is_ident_start)
}

fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let at = |i: usize| if i < n { c[i] } else { '\0' };
    let (mut i, mut line) = (0usize, 1usize);
    let mut out = Vec::new();
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' || (ch == 'b' && at(i + 1) == '"') || (ch == 'c' && at(i + 1) == '"') {
            // normal (byte, C) string
            i += if ch == '"' { 1 } else { 2 };
            while i < n && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if is_ident_start(ch) && raw_string_at(&c, i).is_some() {
            let (hashes, start) = raw_string_at(&c, i).unwrap();
            i = start;
            loop {
                if i >= n {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                if c[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
        } else if ch == 'b' && at(i + 1) == '\'' {
            // byte char
            i += 2;
            if at(i) == '\\' {
                i += 2;
            }
            while i < n && c[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                i += 2;
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'x'
            } else {
                i += 1; // lifetime or label: the identifier follows
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            // raw identifier r#name
            i += 2;
            let s = i;
            while i < n && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok { text: c[s..i].iter().collect(), line });
        } else if is_ident_start(ch) {
            let s = i;
            while i < n && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok { text: c[s..i].iter().collect(), line });
        } else if ch.is_ascii_digit() {
            while i < n && (is_ident_char(c[i]) || c[i] == '.' && at(i + 1).is_ascii_digit()) {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok { text: "::".into(), line });
            i += 2;
        } else {
            out.push(Tok { text: ch.to_string(), line });
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, `br##"`, `cr"` at `i`: (number of hashes, index after the opening quote).
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c[j] == 'b' || c[j] == 'c' {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut h = 0;
    while c.get(j) == Some(&'#') {
        h += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((h, j + 1))
}

// ---------------------------------------------------------------------------------------------
// Paths and use trees.

/// One path of a use tree or expression, each segment with its line.
#[derive(Debug, Clone)]
struct PathRef {
    segs: Vec<(String, usize)>,
    /// The name it binds when used in `use` (last segment or its `as` alias).
    binding: Option<String>,
}

/// Parses a use tree (or an expression path) starting at `t[i]`; returns its expanded paths and the
/// index after it. Stops at anything that is not `ident`, `::`, `{ , }`, `*` or `as ident`.
fn parse_tree(t: &[Tok], i: usize) -> (Vec<PathRef>, usize) {
    let Some(tok) = t.get(i) else { return (vec![], i) };
    if tok.text == "{" {
        let mut all = Vec::new();
        let mut i = i + 1;
        while i < t.len() {
            match t[i].text.as_str() {
                "}" => return (all, i + 1),
                "," => i += 1,
                _ => {
                    let (mut ps, j) = parse_tree(t, i);
                    all.append(&mut ps);
                    i = if j == i { i + 1 } else { j };
                }
            }
        }
        return (all, i);
    }
    if tok.text == "*" {
        return (vec![PathRef { segs: vec![("*".into(), tok.line)], binding: None }], i + 1);
    }
    if !is_ident(&tok.text) {
        return (vec![], i);
    }
    let seg = (tok.text.clone(), tok.line);
    let next = t.get(i + 1).map(|x| x.text.as_str());
    let after = t.get(i + 2).map(|x| x.text.as_str());
    if next == Some("::") && after.is_some_and(|a| a == "{" || a == "*" || is_ident(a)) {
        let (sub, j) = parse_tree(t, i + 2);
        let out = sub
            .into_iter()
            .map(|mut p| {
                p.segs.insert(0, seg.clone());
                p
            })
            .collect();
        return (out, j);
    }
    if next == Some("as") && after.is_some_and(is_ident) {
        let alias = t[i + 2].text.clone();
        return (vec![PathRef { segs: vec![seg], binding: Some(alias) }], i + 3);
    }
    let name = seg.0.clone();
    (vec![PathRef { segs: vec![seg], binding: Some(name) }], i + 1)
}

// ---------------------------------------------------------------------------------------------
// Scanning files.

#[derive(Debug, Clone)]
struct Ref {
    line: usize,
    /// Absolute module path from the crate root (`self` segments removed).
    abs: Vec<String>,
    /// As written, for messages.
    written: String,
    in_test: bool,
}

#[derive(Debug, Default)]
struct FileScan {
    /// Path relative to the root, e.g. `src/reverse/seeds.rs`.
    rel: String,
    /// Module path, e.g. `["reverse", "seeds"]`; empty for lib.rs / main.rs.
    modpath: Vec<String>,
    refs: Vec<Ref>,
    /// `use` declarations outside test code at the file's own module level: (path segments, binding).
    uses: Vec<(Vec<String>, String)>,
    /// `mod NAME;` declarations: (module path of the declared module, under cfg(test)).
    decls: Vec<(Vec<String>, bool)>,
    /// `macro_rules! NAME`.
    macros: Vec<String>,
}

fn module_path_of(rel_to_src: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel_to_src.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return vec![];
    }
    if stem != "mod" {
        parts.push(stem);
    }
    parts
}

fn resolve(head: &str, rest: &[(String, usize)], base: &[String]) -> Option<Vec<String>> {
    let mut abs: Vec<String> = match head {
        "crate" | "quarantine" => vec![],
        "self" => base.to_vec(),
        "super" => {
            let mut b = base.to_vec();
            b.pop()?;
            b
        }
        _ => return None,
    };
    let mut climbing = head == "super";
    for (s, _) in rest {
        if s == "super" && climbing {
            abs.pop()?;
            continue;
        }
        climbing = false;
        if s == "self" {
            continue;
        }
        abs.push(s.clone());
    }
    Some(abs)
}

fn scan(rel: String, modpath: Vec<String>, src: &str) -> FileScan {
    let t = lex(src);
    let mut f = FileScan { rel, modpath: modpath.clone(), ..Default::default() };
    let mut depth = 0usize;
    // inline modules: (name, depth inside its braces, test)
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    let mut pending_test = false;
    let mut i = 0;
    while i < t.len() {
        let s = t[i].text.as_str();
        let in_test = inline.last().is_some_and(|m| m.2);
        let base: Vec<String> = modpath.iter().cloned().chain(inline.iter().map(|m| m.0.clone())).collect();
        match s {
            "{" => {
                depth += 1;
                i += 1;
                continue;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|m| m.1 > depth) {
                    inline.pop();
                }
                pending_test = false;
                i += 1;
                continue;
            }
            "#" => {
                // attribute: `#[...]` or `#![...]`
                let mut j = i + 1;
                if t.get(j).is_some_and(|x| x.text == "!") {
                    j += 1;
                }
                if t.get(j).is_some_and(|x| x.text == "[") {
                    let texts: Vec<&str> = t[j..(j + 6).min(t.len())].iter().map(|x| x.text.as_str()).collect();
                    if texts == ["[", "cfg", "(", "test", ")", "]"] {
                        pending_test = true;
                    }
                    let mut d = 0;
                    while j < t.len() {
                        match t[j].text.as_str() {
                            "[" => d += 1,
                            "]" => {
                                d -= 1;
                                if d == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
            }
            "pub" => {
                i += 1;
                if t.get(i).is_some_and(|x| x.text == "(") {
                    while i < t.len() && t[i].text != ")" {
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            "mod" if t.get(i + 1).is_some_and(|x| is_ident(&x.text)) => {
                let name = t[i + 1].text.clone();
                let test = pending_test || in_test;
                pending_test = false;
                match t.get(i + 2).map(|x| x.text.as_str()) {
                    Some("{") => {
                        inline.push((name, depth + 1, test));
                        depth += 1;
                        i += 3;
                    }
                    Some(";") => {
                        let mut p = base.clone();
                        p.push(name);
                        f.decls.push((p, test));
                        i += 3;
                    }
                    _ => i += 2,
                }
                continue;
            }
            "macro_rules" if t.get(i + 1).is_some_and(|x| x.text == "!") => {
                if let Some(x) = t.get(i + 2) {
                    f.macros.push(x.text.clone());
                }
                pending_test = false;
                i += 3;
                continue;
            }
            "use" => {
                pending_test = false;
                let mut j = i + 1;
                if t.get(j).is_some_and(|x| x.text == "::") {
                    j += 1;
                }
                let (paths, k) = parse_tree(&t, j);
                for p in &paths {
                    let head = p.segs[0].0.as_str();
                    if matches!(head, "crate" | "super" | "self" | "quarantine") {
                        add_ref(&mut f, head, &p.segs, &base, in_test);
                    }
                    if !in_test && inline.is_empty() {
                        if let Some(b) = &p.binding {
                            f.uses.push((p.segs.iter().map(|x| x.0.clone()).collect(), b.clone()));
                        }
                    }
                }
                i = k.max(j);
                continue;
            }
            "crate" | "super" | "self" | "quarantine"
                if t.get(i + 1).is_some_and(|x| x.text == "::") && (i == 0 || t[i - 1].text != "::") =>
            {
                pending_test = false;
                let (paths, k) = parse_tree(&t, i);
                for p in &paths {
                    add_ref(&mut f, s, &p.segs, &base, in_test);
                }
                i = k.max(i + 1);
                continue;
            }
            _ => {}
        }
        pending_test = false;
        i += 1;
    }
    f
}

fn add_ref(f: &mut FileScan, head: &str, segs: &[(String, usize)], base: &[String], in_test: bool) {
    let Some(abs) = resolve(head, &segs[1..], base) else { return };
    let written = segs.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join("::");
    // the line of the first segment below the head (what names the module in a multi-line group)
    let line = segs.get(1).map_or(segs[0].1, |x| x.1);
    f.refs.push(Ref { line, abs, written, in_test });
}

struct Crate {
    root: PathBuf,
    files: Vec<FileScan>,
    /// Top-level modules declared in lib.rs.
    tops: BTreeSet<String>,
    /// crate-root names that are not modules: re-exports of lib.rs and exported macros -> module.
    aliases: BTreeMap<String, String>,
    /// Module paths declared under `#[cfg(test)]` (their files are test code).
    test_mods: Vec<Vec<String>>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn load() -> Crate {
    let root = root();
    let src = root.join("src");
    assert!(src.join("lib.rs").is_file(), "no src/lib.rs under {} (run from the repository root)", root.display());
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    let mut files = Vec::new();
    for p in paths {
        let rel_src = p.strip_prefix(&src).unwrap().to_path_buf();
        if rel_src.starts_with("bin") {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        files.push(scan(rel, module_path_of(&rel_src), &text));
    }
    let lib = files.iter().find(|f| f.rel == "src/lib.rs").expect("src/lib.rs scanned");
    let tops: BTreeSet<String> = lib.decls.iter().filter(|(p, _)| p.len() == 1).map(|(p, _)| p[0].clone()).collect();
    let mut aliases = BTreeMap::new();
    for (segs, binding) in &lib.uses {
        if let Some(first) = segs.first() {
            if tops.contains(first) {
                aliases.insert(binding.clone(), first.clone());
            }
        }
    }
    for f in &files {
        if let Some(top) = f.modpath.first() {
            for m in &f.macros {
                aliases.entry(m.clone()).or_insert_with(|| top.clone());
            }
        }
    }
    let test_mods = files.iter().flat_map(|f| f.decls.iter().filter(|d| d.1).map(|d| d.0.clone())).collect();
    Crate { root, files, tops, aliases, test_mods }
}

impl Crate {
    fn is_test_file(&self, f: &FileScan) -> bool {
        self.test_mods.iter().any(|m| f.modpath.starts_with(m))
    }
    /// The top-level module an absolute path lands in.
    fn top_of(&self, abs: &[String]) -> Option<String> {
        let first = abs.first()?;
        if self.tops.contains(first) {
            Some(first.clone())
        } else {
            self.aliases.get(first).cloned()
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn no_module_imports_a_higher_layer() {
    let c = load();
    let mut problems = BTreeSet::new();
    let mut notes = BTreeSet::new();
    for top in &c.tops {
        if rank(top).is_none() {
            problems.insert(format!("src/lib.rs: module `{top}` has no layer: add it to RANKS in tests/layers.rs"));
        }
    }
    for f in &c.files {
        let Some(from) = f.modpath.first() else { continue }; // lib.rs, main.rs: the top
        let test_file = c.is_test_file(f);
        for r in &f.refs {
            let Some(to) = c.top_of(&r.abs) else { continue };
            if &to == from {
                continue;
            }
            if std::env::var_os("LAYERS_LIST").is_some() {
                eprintln!(
                    "{}:{}: {from} -> {to} `{}`{}",
                    f.rel,
                    r.line,
                    r.written,
                    if test_file || r.in_test { " (test)" } else { "" }
                );
            }
            let (Some(rf), Some(rt)) = (rank(from), rank(&to)) else {
                continue; // reported above
            };
            if rf < rt {
                let msg =
                    format!("{}:{}: `{from}` (layer {rf}) imports `{to}` (layer {rt}): `{}`", f.rel, r.line, r.written);
                if test_file || r.in_test {
                    notes.insert(msg);
                } else {
                    problems.insert(msg);
                }
            }
        }
    }
    if !notes.is_empty() {
        eprintln!("test code using higher layers (allowed, see the header of tests/layers.rs):");
        for n in &notes {
            eprintln!("  {n}");
        }
    }
    if !problems.is_empty() {
        let list: Vec<String> = problems.into_iter().collect();
        panic!(
            "{} layering violation(s) under {} (a module may only use modules of its own or a lower layer; layers: ARCHITECTURE.md):\n  {}",
            list.len(),
            c.root.display(),
            list.join("\n  ")
        );
    }
}

#[test]
fn no_import_cycle_inside_a_module_folder() {
    let c = load();
    // every module path that has children on disk: a folder
    let mut folders: BTreeSet<Vec<String>> = BTreeSet::new();
    for f in &c.files {
        for k in 1..f.modpath.len() {
            folders.insert(f.modpath[..k].to_vec());
        }
    }
    let mut problems = Vec::new();
    for folder in &folders {
        let n = folder.len();
        let children: BTreeSet<String> = c
            .files
            .iter()
            .filter(|f| f.modpath.len() > n && f.modpath.starts_with(folder))
            .map(|f| f.modpath[n].clone())
            .collect();
        // names the facade (mod.rs) imports from a child: `pub use seeds::{Seeds, ..}`, `use optim::Adam`
        let mut from_child: BTreeMap<String, String> = BTreeMap::new();
        if let Some(facade) = c.files.iter().find(|f| &f.modpath == folder) {
            for (segs, binding) in &facade.uses {
                let segs: Vec<&String> = segs.iter().filter(|s| s.as_str() != "self").collect();
                if segs.len() >= 2 && children.contains(segs[0].as_str()) && binding != "*" {
                    from_child.insert(binding.clone(), segs[0].clone());
                }
            }
        }
        // edges with their evidence
        let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for f in &c.files {
            if f.modpath.len() <= n || !f.modpath.starts_with(folder) || c.is_test_file(f) {
                continue;
            }
            let node = &f.modpath[n];
            for r in f.refs.iter().filter(|r| !r.in_test) {
                if r.abs.len() <= n || !r.abs.starts_with(folder) {
                    continue;
                }
                let name = &r.abs[n];
                let target = if children.contains(name) { Some(name.clone()) } else { from_child.get(name).cloned() };
                let Some(target) = target else { continue }; // an item of the facade itself
                if &target != node {
                    edges
                        .entry((node.clone(), target))
                        .or_default()
                        .push(format!("{}:{} `{}`", f.rel, r.line, r.written));
                }
            }
        }
        for (cycle, comp) in cycles(&children, &edges) {
            let mut evidence = Vec::new();
            for w in cycle.windows(2) {
                let ev = &edges[&(w[0].clone(), w[1].clone())];
                evidence.push(format!("{} -> {}: {}", w[0], w[1], ev.join(", ")));
            }
            let others = if comp.len() + 1 > cycle.len() {
                format!(" [all of {} are in one cycle]", comp.join(", "))
            } else {
                String::new()
            };
            problems.push(format!(
                "src/{}/: import cycle {} ({}){others}",
                folder.join("/"),
                cycle.join(" -> "),
                evidence.join("; ")
            ));
        }
    }
    if !problems.is_empty() {
        panic!("{} import cycle(s) between files of one module:\n  {}", problems.len(), problems.join("\n  "));
    }
}

/// Per strongly connected component of more than one node: a shortest cycle through its first node
/// (that node repeated at the end) and the component's nodes.
fn cycles(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let succ = |a: &String| -> Vec<String> { edges.keys().filter(|(x, _)| x == a).map(|(_, y)| y.clone()).collect() };
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(x) = stack.pop() {
            for y in succ(&x) {
                if seen.insert(y.clone()) {
                    stack.push(y);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<String, BTreeSet<String>> = nodes.iter().map(|a| (a.clone(), reach(a))).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for a in nodes {
        if done.contains(a) || !reachable[a].contains(a) {
            continue;
        }
        // the component of a: nodes b with a ->* b ->* a
        let comp: BTreeSet<String> = nodes
            .iter()
            .filter(|b| *b == a || (reachable[a].contains(*b) && reachable[*b].contains(a)))
            .cloned()
            .collect();
        done.extend(comp.iter().cloned());
        // shortest way back to a, by breadth-first search inside the component
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([a.clone()]);
        'bfs: while let Some(x) = queue.pop_front() {
            for y in succ(&x) {
                if !comp.contains(&y) {
                    continue;
                }
                if &y == a {
                    let mut path = vec![a.clone(), x.clone()];
                    let mut cur = x;
                    while let Some(p) = prev.get(&cur) {
                        path.push(p.clone());
                        cur = p.clone();
                    }
                    path.reverse(); // a, ..., x, a
                    out.push((path, comp.iter().cloned().collect()));
                    break 'bfs;
                }
                if y != *a && !prev.contains_key(&y) {
                    prev.insert(y.clone(), x.clone());
                    queue.push_back(y);
                }
            }
        }
    }
    out
}

/// The scanner itself, on a synthetic file: what it must see and what it must not.
#[test]
fn scanner_finds_paths_and_skips_comments_strings_and_test_modules() {
    let src = r####"
//! Doc: [`crate::report`] is not an import.
use crate::{
    data::Batches,
    model::{Model, Mode as M},
};
use super::sibling::Thing;
/* crate::cli in a block comment /* nested crate::cli */ */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::cli in a string";
    let _ = r#"crate::cli in a raw "string""#;
    let _ = crate::score::run(x);
    let c = '"'; let _ = '\''; let _ = b'"';
    crate::choices!(X {});
    c
}
#[cfg(test)]
#[allow(unused)]
mod tests {
    use crate::cli::Cli;
    mod inner { fn g() { super::super::super::super::report::x(); } }
}
mod later { fn h() { crate::train::go(); } }
"####;
    let f = scan("src/prune/mask.rs".into(), vec!["prune".into(), "mask".into()], src);
    let seen: Vec<(String, usize, bool)> = f.refs.iter().map(|r| (r.abs.join("::"), r.line, r.in_test)).collect();
    let expect = [
        ("data::Batches", 4, false),
        ("model::Model", 5, false),
        ("model::Mode", 5, false),
        ("prune::sibling::Thing", 7, false),
        ("score::run", 12, false),
        ("choices", 14, false),
        ("cli::Cli", 20, true),
        ("report::x", 21, true), // tests -> mask -> prune -> crate root
        ("train::go", 23, false),
    ];
    let expect: Vec<(String, usize, bool)> = expect.iter().map(|(p, l, t)| (p.to_string(), *l, *t)).collect();
    assert_eq!(seen, expect);
    assert!(f.uses.iter().any(|(p, b)| p.join("::") == "crate::model::Mode" && b == "M"));
}
