//! Shared helpers: the contract fixtures, copied into the repository (`fixtures/`).
#![allow(dead_code)]

use std::path::PathBuf;

use models::Submission;

pub fn fixtures_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(kind)
}

/// Every fixture of a kind, sorted by file name, as (stem, bytes).
pub fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixtures_dir(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read(&p).expect("fixture readable"))
        })
        .collect()
}

pub fn submission(stem: &str) -> Submission {
    let path = fixtures_dir("submissions").join(format!("{stem}.json"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Submission::parse(&body).unwrap_or_else(|e| panic!("{stem} refused: {e}"))
}

pub fn fixture_value(stem: &str) -> serde_json::Value {
    let path = fixtures_dir("submissions").join(format!("{stem}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
