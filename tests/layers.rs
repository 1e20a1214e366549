//! The layer check: every `crate::` path in runtime/ points down the layer table of
//! runtime/lib.rs (a folder imports only folders of a lower layer, and itself). The
//! table is read from the crate docs, the sources are read as text: a new folder must be
//! placed in the table, and an import back up fails here with its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folder (or top-level file stem) -> layer, from the `| N | a, b |` rows of the table.
fn layer_table(lib_rs: &str) -> BTreeMap<String, u32> {
    let mut table = BTreeMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.trim().strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(layer) = cells.first().and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for folder in cells.get(1).unwrap_or(&"").split(',') {
            table.insert(folder.trim().to_string(), layer);
        }
    }
    table
}

/// Items the crate root re-exports (`pub use api::{Output, ..}`) -> the folder they
/// come from, so that `crate::Output` counts as an import of api/.
fn root_reexports(lib_rs: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib_rs.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let module = module.split("::").next().unwrap_or(module).to_string();
        // the folder is the first segment; items may be `{A, B}` or `x::{A, B}` or `A`
        let items = items.rsplit("::").next().unwrap_or(items);
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let item = item.trim();
            if !item.is_empty() {
                map.insert(item.to_string(), module.clone());
            }
        }
    }
    map
}

/// The source with `//` comments blanked (line numbers kept); string contents are
/// kept, which is fine: a `crate::` inside a string literal is rare and visible.
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every first path segment after `crate::` (skipping `$crate::` in macros), with the
/// line it is on; `use crate::{a::x, b}` groups give each of `a` and `b`.
fn crate_paths(src: &str) -> Vec<(usize, String)> {
    let text = strip_comments(src);
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        let before = if at == 0 { b' ' } else { bytes[at - 1] };
        if before == b'$' || before.is_ascii_alphanumeric() || before == b'_' {
            continue;
        }
        let line = text[..at].matches('\n').count() + 1;
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // top-level items of the brace group
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push((line, first_segment(&item)));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push((line, first_segment(&item)));
        } else {
            found.push((line, first_segment(rest)));
        }
    }
    found.retain(|(_, s)| !s.is_empty() && s != "self");
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// `folder/file.rs:line: folder (layer a) imports target (layer b)` for every arrow
/// that does not point down, plus folders missing from the table.
fn violations(
    table: &BTreeMap<String, u32>,
    reexports: &BTreeMap<String, String>,
    files: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, src) in files {
        let folder = match rel.split_once('/') {
            Some((f, _)) => f.to_string(),
            None => rel.trim_end_matches(".rs").to_string(),
        };
        // the crate root declares and re-exports; the binary's `crate::` is its own
        if folder == "lib" || folder == "cli" {
            continue;
        }
        let Some(&layer) = table.get(&folder) else {
            out.push(format!(
                "{rel}: folder `{folder}` is not in the layer table of runtime/lib.rs"
            ));
            continue;
        };
        for (line, segment) in crate_paths(src) {
            let target = if table.contains_key(&segment) {
                segment.clone()
            } else if let Some(m) = reexports.get(&segment) {
                m.clone()
            } else {
                out.push(format!(
                    "{rel}:{line}: `crate::{segment}` is neither a folder of the layer table nor a re-export of runtime/lib.rs"
                ));
                continue;
            };
            if target == folder {
                continue;
            }
            let target_layer = table[&target];
            if target_layer >= layer {
                out.push(format!(
                    "{rel}:{line}: {folder} (layer {layer}) imports {target} (layer {target_layer}): imports must point down"
                ));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under runtime/")
                .to_string_lossy()
                .replace('\\', "/");
            let src = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((rel, src));
        }
    }
}

#[test]
fn every_import_points_down_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("runtime/lib.rs");
    let table = layer_table(&lib);
    assert!(
        table.len() >= 10,
        "the layer table of runtime/lib.rs was not found: {table:?}"
    );
    let reexports = root_reexports(&lib);
    assert_eq!(reexports.get("Error").map(String::as_str), Some("error"));
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    // every folder of runtime/ has a row
    for (rel, _) in &files {
        if let Some((folder, _)) = rel.split_once('/') {
            assert!(
                table.contains_key(folder),
                "runtime/{folder}/ is not in the layer table of runtime/lib.rs"
            );
        }
    }
    let found = violations(&table, &reexports, &files);
    assert!(found.is_empty(), "imports back up:\n{}", found.join("\n"));
}

#[test]
fn the_check_catches_an_import_back_up() {
    let lib = "//! | layer | folders |\n//! |---|---|\n//! | 3 | api |\n//! | 2 | capture, decode |\n//! | 1 | clock, error |\npub use api::{Output, Runtime};\npub use error::{Error, Result};\n";
    let table = layer_table(lib);
    let reexports = root_reexports(lib);
    let files = vec![
        // fine: down, itself, a re-export from below, `$crate` in a macro
        (
            "api/mod.rs".to_string(),
            "use crate::capture::X;\nuse crate::{clock::Nanos, Error};\nuse crate::api::Y;\n$crate::Error::new()".to_string(),
        ),
        // wrong: up through a group, sideways, up through a re-export, inline path
        (
            "capture/video.rs".to_string(),
            "// crate::api in a comment is ignored\nuse crate::{clock::Nanos, api::Runtime};\nuse crate::decode::Event;\nfn f() -> crate::Output { todo!() }".to_string(),
        ),
        ("window/mod.rs".to_string(), "use crate::clock::Nanos;".to_string()),
    ];
    let found = violations(&table, &reexports, &files);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("capture/video.rs:2: capture (layer 2) imports api (layer 3)"));
    assert!(found[1].starts_with("capture/video.rs:3: capture (layer 2) imports decode (layer 2)"));
    assert!(found[2].starts_with("capture/video.rs:4: capture (layer 2) imports api (layer 3)"));
    assert!(found[3].contains("`window` is not in the layer table"));
}
