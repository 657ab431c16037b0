//! The fuzzers' seed files (`fuzz/seeds/`) are valid inputs, so that fuzzing starts from inputs
//! that get through every check (and the seeds follow the formats as they change).

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

#[test]
fn idx_seeds_parse() {
    for path in seeds("idx") {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("images") {
            eqprop::data::parse_idx_images(&bytes, &path).unwrap();
        } else {
            eqprop::data::parse_idx_labels(&bytes, &path).unwrap();
        }
    }
}

#[test]
fn checkpoint_seeds_load() {
    for path in seeds("checkpoint") {
        let bytes = std::fs::read(&path).unwrap();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("judge")
        {
            eqprop::judge::Judge::load_bytes(&bytes, &path).unwrap();
        } else {
            let ckpt = eqprop::checkpoint::load_bytes(&bytes, &path).unwrap();
            assert!(ckpt.persistent.is_some() || ckpt.dream_chains.is_some());
        }
    }
}

#[test]
fn fixture_seeds_replay_without_mismatches() {
    for path in seeds("fixture") {
        let text = std::fs::read_to_string(&path).unwrap();
        let rep = eqprop::env::fixture::replay_json(&text).unwrap();
        assert_eq!((rep.mismatches, rep.steps), (0, 3), "{}", path.display());
    }
}
