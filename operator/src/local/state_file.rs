//! The JSON snapshot `--state-file` asks for (pids, ports, phases) for tests and tools.
//! Written atomically (temp file + rename) and owner-only: it holds the Redis password.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Replaces `path` with `text` in one step.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn written_whole_and_owner_only() {
        let path =
            std::env::temp_dir().join(format!("pushcluster-state-{}.json", std::process::id()));
        write(&path, "{\"a\":1}").expect("write");
        write(&path, "{}").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{}");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_file(&path).expect("cleanup");
    }
}
