//! Checks made before any long work starts: outputs that can be written, inputs that exist.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Makes `dir` (and its parents) and proves that a file can be written in it.
pub fn writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    let probe = dir.join(format!(".eqprop-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write in the output folder {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Proves that the file `path` can be written: its folder is writable and the path is not a
/// folder.
pub fn writable_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{} is a folder, not a file to write", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    writable_dir(dir.unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot write {}", path.display()))
}
