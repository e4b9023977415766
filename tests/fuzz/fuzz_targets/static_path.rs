//! Static path resolution: whatever the path, a resolved file is a regular file inside
//! the web root; nothing panics.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reactor::StaticFiles;

fn fixture() -> &'static (PathBuf, StaticFiles) {
    static FIXTURE: OnceLock<(PathBuf, StaticFiles)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("imd-fuzz-static-{}", std::process::id()));
        let root = dir.join("www");
        std::fs::create_dir_all(root.join("css")).expect("fixture");
        std::fs::write(root.join("chat.html"), "<html>").expect("fixture");
        std::fs::write(root.join("css/a.css"), "a{}").expect("fixture");
        std::fs::write(dir.join("secret.txt"), "secret").expect("fixture");
        let _ = std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link.txt"));
        let files = StaticFiles::new(&root, "/im/www/v1/").expect("root");
        (std::fs::canonicalize(&root).expect("root"), files)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(rest) = std::str::from_utf8(data) else { return };
    let (root, files) = fixture();
    if let Some(file) = files.resolve(&format!("/im/www/v1/{rest}")) {
        assert!(file.starts_with(root), "{rest:?} escaped to {file:?}");
        assert!(file.is_file());
    }
});
