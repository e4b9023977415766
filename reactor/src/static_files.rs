//! Static files under a web root (PROTOCOL.md §7): GET and HEAD, content types,
//! `Last-Modified`/`ETag` with 304, an index page, and no way out of the root.
//!
//! A file that is cached and was checked against the disk within the last second is
//! answered by the event loop itself ([`StaticFiles::serve_hot`]): no syscall, no
//! worker. Everything else (the first request, a stale entry, a miss, an error) goes to
//! a worker through [`StaticFiles::serve`], which touches the disk.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Request, Response};

/// A cached file is checked against the disk at most this often.
const REVALIDATE: Duration = Duration::from_secs(1);
/// Files larger than this are read per request instead of cached.
const CACHE_FILE_LIMIT: u64 = 1 << 20;
/// At most this many URL paths are cached (a web root is small; this bounds memory
/// against requests for many distinct names).
const CACHE_ENTRIES: usize = 1024;

/// Serves files below one directory at one URL prefix.
pub struct StaticFiles {
    root: PathBuf,
    prefix: String,
    /// What cache entries' check times count from.
    epoch: Instant,
    /// URL path → what it served, so a hot file costs neither path resolution nor a
    /// read per request.
    cache: RwLock<HashMap<String, Arc<Cached>>>,
}

/// A file as last read from disk.
struct Cached {
    file: PathBuf,
    body: Vec<u8>,
    len: u64,
    mtime: u64,
    etag: String,
    last_modified: String,
    content_type: &'static str,
    /// When it was last found unchanged on disk, in ms since [`StaticFiles::epoch`].
    checked_ms: AtomicU64,
}

impl Cached {
    fn load(file: PathBuf, now_ms: u64) -> Option<Cached> {
        let meta = fs::metadata(&file).ok()?;
        let mtime = mtime_secs(&meta);
        let body = if meta.len() <= CACHE_FILE_LIMIT { fs::read(&file).ok()? } else { Vec::new() };
        Some(Cached {
            etag: format!("\"{:x}-{:x}\"", meta.len(), mtime),
            last_modified: http_date(mtime),
            content_type: content_type(&file),
            len: meta.len(),
            mtime,
            body,
            file,
            checked_ms: AtomicU64::new(now_ms),
        })
    }

    /// Checked against the disk less than [`REVALIDATE`] ago.
    fn recently_checked(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.checked_ms.load(Relaxed)) < REVALIDATE.as_millis() as u64
    }

    /// Still what is on disk (checked at most once per [`REVALIDATE`]).
    fn fresh(&self, now_ms: u64) -> bool {
        if self.recently_checked(now_ms) {
            return true;
        }
        let same = fs::metadata(&self.file)
            .is_ok_and(|m| m.len() == self.len && mtime_secs(&m) == self.mtime);
        if same {
            self.checked_ms.store(now_ms, Relaxed);
        }
        same
    }
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

impl StaticFiles {
    /// `root` must exist; it is canonicalized once so every file can be checked
    /// against it after symlinks are resolved.
    pub fn new(root: impl Into<PathBuf>, prefix: &str) -> std::io::Result<StaticFiles> {
        let root = fs::canonicalize(root.into())?;
        if !root.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"));
        }
        Ok(StaticFiles {
            root,
            prefix: prefix.to_string(),
            epoch: Instant::now(),
            cache: RwLock::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn cached(&self, path: &str) -> Option<Arc<Cached>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    /// The cached entry for a URL path, loading or refreshing it as needed.
    fn lookup(&self, path: &str) -> Option<Arc<Cached>> {
        let now_ms = self.now_ms();
        if let Some(entry) = self.cached(path).filter(|e| e.fresh(now_ms)) {
            return Some(entry);
        }
        // Resolve again: the file may have moved, or become a link out of the root.
        let entry = Arc::new(Cached::load(self.resolve(path)?, now_ms)?);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(path.to_string(), entry.clone());
        Some(entry)
    }

    /// Answers a request for a path under the prefix.
    pub fn serve(&self, req: &Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return text(405, "Method Not Allowed\n").with_header("Allow", "GET, HEAD");
        }
        let Some(entry) = self.lookup(req.path()) else { return not_found() };
        respond(&entry, req, || {
            if entry.len <= CACHE_FILE_LIMIT {
                Some(entry.body.clone())
            } else {
                fs::read(&entry.file).ok()
            }
        })
    }

    /// The answer to a GET or HEAD of a file held in memory and checked against the
    /// disk within the last [`REVALIDATE`], without a syscall; `None` for anything else,
    /// which [`serve`](Self::serve) answers on a worker.
    pub fn serve_hot(&self, req: &Request) -> Option<Response> {
        if req.method != "GET" && req.method != "HEAD" {
            return None;
        }
        let entry = self.cached(req.path())?;
        if entry.len > CACHE_FILE_LIMIT || !entry.recently_checked(self.now_ms()) {
            return None;
        }
        Some(respond(&entry, req, || Some(entry.body.clone())))
    }

    /// The file a URL path names, or `None` when it is not a regular file inside root.
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        let rest = path
            .strip_prefix(self.prefix.as_str())
            .or_else(|| (path == self.prefix.trim_end_matches('/')).then_some(""))?;
        let decoded = percent_decode(rest)?;
        let relative = if decoded.is_empty() { "chat.html".to_string() } else { decoded };
        let mut candidate = self.root.clone();
        for part in relative.split('/') {
            if part.is_empty() {
                continue;
            }
            // Encoded separators, dots segments, NUL and backslashes never name a file.
            if part == "." || part == ".." || part.contains(['\\', '\0', '%']) {
                return None;
            }
            let comp = Path::new(part).components().next()?;
            if !matches!(comp, Component::Normal(_)) {
                return None;
            }
            candidate.push(part);
        }
        let real = fs::canonicalize(&candidate).ok()?;
        (real.starts_with(&self.root) && real.is_file()).then_some(real)
    }
}

/// 304 when the client holds the current version; else 200 with the body, which is only
/// then copied or read (404 when it can no longer be read).
fn respond(entry: &Cached, req: &Request, body: impl FnOnce() -> Option<Vec<u8>>) -> Response {
    let matches = req
        .header("If-None-Match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == entry.etag || t.trim() == "*"));
    if matches {
        return Response::empty(304)
            .with_header("ETag", entry.etag.clone())
            .with_header("Last-Modified", entry.last_modified.clone());
    }
    let Some(body) = body() else { return not_found() };
    Response::new(200, entry.content_type, body)
        .with_header("ETag", entry.etag.clone())
        .with_header("Last-Modified", entry.last_modified.clone())
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Content-Type-Options", "nosniff")
}

fn not_found() -> Response {
    Response::new(
        404,
        "application/json; charset=utf-8",
        r#"{"code":404,"message":"Not Found","ok":false}"#,
    )
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status, "text/plain; charset=utf-8", body)
}

/// Decodes `%XX` once; `None` for a bad escape or bytes that are not UTF-8. A `/`
/// produced by decoding is refused: only literal slashes separate segments.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if v == b'/' {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        _ => "application/octet-stream",
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) from unix seconds.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time as an HTTP date (used by tests).
#[allow(dead_code)]
fn now_http_date() -> String {
    http_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (PathBuf, StaticFiles) {
        let dir = std::env::temp_dir().join(format!(
            "reactor-static-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("www/css")).unwrap();
        fs::write(dir.join("www/chat.html"), "<html>").unwrap();
        fs::write(dir.join("www/css/a.css"), "body{}").unwrap();
        fs::write(dir.join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("www/link.txt")).unwrap();
        let files = StaticFiles::new(dir.join("www"), "/im/www/v1/").unwrap();
        (dir, files)
    }

    #[test]
    fn resolves_inside_only() {
        let (dir, f) = fixture();
        assert!(f.resolve("/im/www/v1/").unwrap().ends_with("chat.html"));
        assert!(f.resolve("/im/www/v1/css/a.css").is_some());
        assert!(f.resolve("/im/www/v1/css%2fa.css").is_none());
        for evil in [
            "/im/www/v1/../secret.txt",
            "/im/www/v1/%2e%2e/secret.txt",
            "/im/www/v1/%2E%2E/secret.txt",
            "/im/www/v1/..%2fsecret.txt",
            "/im/www/v1/..%5csecret.txt",
            "/im/www/v1/%252e%252e/secret.txt",
            "/im/www/v1/chat.html%00.png",
            "/im/www/v1//etc/passwd",
            "/im/www/v1/link.txt",
            "/im/www/v1/css",
            "/im/www/v1/%zz",
            "/elsewhere/chat.html",
        ] {
            assert!(f.resolve(evil).is_none(), "{evil}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    fn get(files: &StaticFiles, path: &str) -> Response {
        files.serve(&Request {
            method: "GET".into(),
            target: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: crate::Listener::Plain,
        })
    }

    #[test]
    fn cached_files_follow_the_disk() {
        let (dir, f) = fixture();
        assert_eq!(get(&f, "/im/www/v1/css/a.css").body, b"body{}");
        fs::write(dir.join("www/css/a.css"), "body{color:red}").unwrap();
        std::thread::sleep(REVALIDATE + Duration::from_millis(100));
        assert_eq!(get(&f, "/im/www/v1/css/a.css").body, b"body{color:red}");
        fs::remove_file(dir.join("www/css/a.css")).unwrap();
        std::thread::sleep(REVALIDATE + Duration::from_millis(100));
        assert_eq!(get(&f, "/im/www/v1/css/a.css").status, 404);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn only_recently_checked_files_are_hot() {
        let (dir, f) = fixture();
        let req = |path: &str, etag: Option<&str>| Request {
            method: "GET".into(),
            target: path.into(),
            headers: etag
                .map(|e| ("If-None-Match".to_string(), e.as_bytes().to_vec()))
                .into_iter()
                .collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: crate::Listener::Plain,
        };
        assert!(f.serve_hot(&req("/im/www/v1/css/a.css", None)).is_none(), "not loaded yet");
        let cold = f.serve(&req("/im/www/v1/css/a.css", None));
        let hot = f.serve_hot(&req("/im/www/v1/css/a.css", None)).expect("hot once served");
        assert_eq!((hot.status, &hot.body, &hot.headers), (cold.status, &cold.body, &cold.headers));
        let etag = hot.headers.iter().find(|(k, _)| *k == "ETag").map(|(_, v)| v.clone());
        let not_modified = f.serve_hot(&req("/im/www/v1/css/a.css", etag.as_deref())).unwrap();
        assert_eq!(not_modified.status, 304);
        fs::write(dir.join("www/css/a.css"), "body{color:red}").unwrap();
        std::thread::sleep(REVALIDATE + Duration::from_millis(100));
        assert!(f.serve_hot(&req("/im/www/v1/css/a.css", None)).is_none(), "due for a check");
        assert_eq!(f.serve(&req("/im/www/v1/css/a.css", None)).body, b"body{color:red}");
        let hot = f.serve_hot(&req("/im/www/v1/css/a.css", None)).expect("hot again");
        assert_eq!(hot.body, b"body{color:red}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(now_http_date().ends_with("GMT"));
    }
}
