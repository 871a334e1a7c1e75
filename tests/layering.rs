//! The layer order written in the README's "Project layout" section, enforced: a module of
//! `src/` may import (`crate::…`) only itself and modules in layers below its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer index (0 = top) of each module, read from the README's numbered layer list.
fn layers_from_readme(readme: &str) -> BTreeMap<String, usize> {
    let section = readme
        .split("\n## Project layout")
        .nth(1)
        .expect("README has a `## Project layout` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut layers = BTreeMap::new();
    let mut index = 0;
    for line in section.lines() {
        let Some((num, rest)) = line.trim().split_once(". ") else {
            continue;
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        for name in names {
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                layers.insert(name.to_string(), index);
            }
        }
        index += 1;
    }
    layers
}

/// The top-level modules a source text imports through `crate::` (code only, not comments).
fn crate_imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("");
                    if !head.is_empty() {
                        out.push(head.to_string());
                    }
                }
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(head);
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Violations of `layers` by the files of `src`, as readable lines.
fn violations(src: &Path, layers: &BTreeMap<String, usize>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("file under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("utf-8 path")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&mine) = layers.get(&top) else {
            found.push(format!(
                "module `{top}` ({}) is not in the README's layers",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source file");
        for dep in crate_imports(&text) {
            if dep == top {
                continue;
            }
            match layers.get(&dep) {
                None => found.push(format!("{} imports unknown module `{dep}`", rel.display())),
                Some(&theirs) if theirs <= mine => found.push(format!(
                    "{} (layer {}) imports `{dep}` (layer {}): imports must point down",
                    rel.display(),
                    mine + 1,
                    theirs + 1
                )),
                Some(_) => {}
            }
        }
    }
    found.sort();
    found
}

#[test]
fn modules_import_only_layers_below_their_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let layers = layers_from_readme(&readme);
    assert!(
        layers.len() >= 10,
        "the README lists the layers as a numbered list of `module` names: {layers:?}"
    );
    let bad = violations(&root.join("src"), &layers);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_catches_an_upward_import_and_an_unlisted_module() {
    let dir = std::env::temp_dir().join(format!("herald-layering-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("low")).unwrap();
    std::fs::write(
        dir.join("top.rs"),
        "use crate::low::X;\n// crate::top in a comment\n",
    )
    .unwrap();
    std::fs::write(dir.join("low/mod.rs"), "use crate::{top::Y, low::Z};\n").unwrap();
    std::fs::write(dir.join("stray.rs"), "").unwrap();
    let layers = layers_from_readme(
        "# x\n\n## Project layout\n\n1. `top`\n2. `low`, `other`\n\n## Next\n3. `ignored`\n",
    );
    assert_eq!(layers.get("other"), Some(&1));
    assert_eq!(layers.get("ignored"), None);
    let bad = violations(&dir, &layers);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("low/mod.rs") && bad[0].contains("`top`"));
    assert!(bad[1].contains("`stray`"));
}
