//! Temporary files for configurations, certificates and keys the hub reads, removed when the
//! test that wrote them ends, however it ends.

use std::path::{Path, PathBuf};

/// A unique suffix for names of files and keys.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A file in the temporary directory, removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// Writes `contents` to a new file named `nerve-test-<unique>.<ext>`.
    pub fn write(ext: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("nerve-test-{}.{ext}", unique()));
        std::fs::write(&path, contents).expect("write a temporary file");
        TempFile(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
