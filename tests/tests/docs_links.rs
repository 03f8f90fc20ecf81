//! Every relative link in the repository's Markdown files resolves inside a clone (a link to a
//! file that moved or never existed fails here, not in a reader's browser), and no Markdown
//! file narrates the repository's development history.

use std::path::{Path, PathBuf};

/// Markdown files under `dir`, skipping build output and git's folder.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && !name.starts_with("target-") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The targets of the inline links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        if let Some(end) = after.find(')') {
            targets.push(after[..end].trim().to_string());
        }
        rest = after;
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    assert!(files.len() >= 4, "found the docs: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            let external = ["http://", "https://", "mailto:", "#"]
                .iter()
                .any(|p| target.starts_with(p));
            if external || target.is_empty() {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            checked += 1;
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
    println!("{checked} relative links in {} files resolve", files.len());
}

/// Where `text` narrates the repository's own development (sessions of work, what "this
/// build" changed), if anywhere: the docs describe the product as it is, and history lives in
/// git. Returns the offending phrase.
fn narrated_history(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    const PHRASES: [&str; 8] = [
        "this session",
        "earlier session",
        "previous session",
        "last session",
        "next session",
        "development session",
        "in this commit",
        "in this pr",
    ];
    if let Some(p) = PHRASES.iter().find(|p| lower.contains(*p)) {
        return Some((*p).to_string());
    }
    // "session 12", "sessions 3 to 5": a numbered session is a session of work (protocol
    // sessions are never numbered in prose).
    let bytes = lower.as_bytes();
    for (at, _) in lower.match_indices("session") {
        let mut i = at + "session".len();
        if bytes.get(i) == Some(&b's') {
            i += 1;
        }
        if bytes.get(i) == Some(&b' ') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let end = (i + 4).min(lower.len());
            return Some(lower[at..end].to_string());
        }
    }
    None
}

#[test]
fn no_document_narrates_its_development_history() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    let found: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            narrated_history(&text).map(|p| format!("{}: {p:?}", f.display()))
        })
        .collect();
    assert!(found.is_empty(), "history narrated in: {found:#?}");
}

#[test]
fn the_history_check_finds_narration_and_passes_the_protocols_sessions() {
    assert!(narrated_history("Measured in session 12 on a new build.").is_some());
    assert!(narrated_history("Sessions 3 to 5 rewrote the dealer.").is_some());
    assert!(narrated_history("This session's build is faster.").is_some());
    assert!(
        narrated_history("The dealer deals each session once; sessions in flight are capped.")
            .is_none()
    );
}

#[test]
fn the_link_reader_finds_links() {
    let t = link_targets("see [a](docs/a.md) and [b](https://x.y) or [c](../c.md#part).");
    assert_eq!(t, ["docs/a.md", "https://x.y", "../c.md#part"]);
}
