//! `docs/ARCHITECTURE.md`'s module map matches the tree: every path it names exists, and every
//! module (file or folder at the top of a crate's `src/`, and of the folders it names) is
//! named, so the map cannot rot as code moves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The paths in the first column of the module map.
fn named() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("the doc");
    let map = doc
        .split("## Module map")
        .nth(1)
        .expect("a \"## Module map\" section");
    map.lines()
        .filter_map(|l| {
            let cell = l.strip_prefix("| `")?;
            Some(cell.split('`').next()?.to_string())
        })
        .collect()
}

/// Whether `entry` (relative to the repository) is covered by a named path.
fn covered(entry: &str, named: &BTreeSet<String>) -> bool {
    let as_dir = format!("{entry}/");
    let as_file = format!("{entry}.rs");
    named.iter().any(|n| {
        n == entry
            || *n == as_dir
            || *n == as_file
            || (n.ends_with('/') && entry.starts_with(n.as_str()))
            || n.starts_with(&as_dir)
    })
}

#[test]
fn every_path_the_module_map_names_exists() {
    let names = named();
    assert!(names.len() > 50, "the map lists {} paths", names.len());
    let missing: Vec<&String> = names
        .iter()
        .filter(|p| !root().join(p.trim_end_matches('/')).exists())
        .collect();
    assert!(missing.is_empty(), "named but not in the tree: {missing:?}");
}

#[test]
fn every_module_of_every_crate_is_in_the_module_map() {
    let names: BTreeSet<String> = named().into_iter().collect();
    let mut unnamed = Vec::new();
    for krate in [
        "proto",
        "networkdb",
        "overlay",
        "ipvs",
        "agent",
        "cni",
        "lab",
        "cluster-tests",
    ] {
        let src = root().join(krate).join("src");
        for e in std::fs::read_dir(&src).expect("src dir").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            // Unit tests beside a module are part of it.
            if name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let rel = format!("{krate}/src/{}", name.trim_end_matches(".rs"));
            let rel = if e.path().is_dir() {
                rel
            } else {
                format!("{krate}/src/{name}")
            };
            let stem = rel.trim_end_matches(".rs");
            if !covered(&rel, &names) && !covered(stem, &names) {
                unnamed.push(rel);
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "modules missing from the map: {unnamed:?}"
    );
}
