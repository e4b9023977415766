//! Static files under a web root (docs/protocol.md §7): GET and HEAD, content types,
//! `Last-Modified`/`ETag` with 304, an index page, and no way out of the root.
//!
//! A file that is cached and was checked against the disk within the last second is
//! answered by the event loop itself ([`StaticFiles::serve_hot`]): no syscall, no
//! worker. Everything else (the first request, a stale entry, a miss, an error) goes to
//! a worker through [`StaticFiles::serve`], which touches the disk.
//!
//! The cache is keyed by the resolved file, never by the URL a client chose: `x`, `//x`
//! and `%78` are one entry, and the whole cache has a byte budget. Only the plain
//! spelling of a cached file's URL is hot; any other goes through resolution.

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
/// What an entry costs beside its body and path: its map slots, headers and strings.
const ENTRY_OVERHEAD: usize = 512;
/// The page `/im/www/v1/` serves.
const INDEX: &str = "chat.html";
/// The web client loads its scripts, styles and pages from here only, shows pictures
/// only from here or `data:` URLs, and is never framed: text a user injects can run
/// nothing, and no other site can overlay the page (clickjacking).
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// Serves files below one directory at one URL prefix.
pub struct StaticFiles {
    root: PathBuf,
    prefix: String,
    /// What cache entries' check times count from.
    epoch: Instant,
    /// Most bytes the cache holds, bodies and bookkeeping together.
    cache_bytes: usize,
    cache: RwLock<Cache>,
}

/// Files as last read, so a hot file costs neither path resolution nor a read.
#[derive(Default)]
struct Cache {
    /// Resolved file → its entry.
    files: HashMap<PathBuf, Arc<Cached>>,
    /// The plain URL path of each cached file that has one → its entry: what the event
    /// loop looks up. Its keys come from the files, so requests cannot add to it.
    urls: HashMap<String, Arc<Cached>>,
    /// What the entries cost ([`Cached::cost`]).
    bytes: usize,
}

impl Cache {
    fn remove(&mut self, file: &Path) {
        if let Some(old) = self.files.remove(file) {
            self.bytes -= old.cost();
            if let Some(url) = &old.url {
                self.urls.remove(url);
            }
        }
    }

    /// Keeps `entry` within `budget` bytes, evicting the entries checked longest ago.
    fn insert(&mut self, entry: Arc<Cached>, budget: usize) {
        self.remove(&entry.file);
        let cost = entry.cost();
        if cost > budget {
            return;
        }
        while self.bytes + cost > budget {
            let Some(oldest) =
                self.files.values().min_by_key(|e| e.checked_ms.load(Relaxed)).cloned()
            else {
                break;
            };
            self.remove(&oldest.file);
        }
        self.bytes += cost;
        if let Some(url) = &entry.url {
            self.urls.insert(url.clone(), entry.clone());
        }
        self.files.insert(entry.file.clone(), entry);
    }
}

/// A file as last read from disk.
struct Cached {
    file: PathBuf,
    /// The plain spelling of its URL path, when it has one.
    url: Option<String>,
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
    fn load(file: PathBuf, url: Option<String>, now_ms: u64) -> Option<Cached> {
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
            url,
            checked_ms: AtomicU64::new(now_ms),
        })
    }

    /// Bytes it holds, counted against the cache's budget.
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + self.body.len()
            + self.file.as_os_str().len()
            + self.url.as_ref().map_or(0, String::len)
            + self.etag.len()
            + self.last_modified.len()
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
    /// The cache's byte budget unless [`with_cache_bytes`](Self::with_cache_bytes) sets one.
    pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

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
            cache_bytes: StaticFiles::DEFAULT_CACHE_BYTES,
            cache: RwLock::new(Cache::default()),
        })
    }

    /// Caps the memory of the cache (bodies and bookkeeping); 0 caches nothing.
    pub fn with_cache_bytes(mut self, bytes: usize) -> StaticFiles {
        self.cache_bytes = bytes;
        self
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry whose plain URL is `path` (the prefix alone stands for the index).
    fn cached_url(&self, path: &str) -> Option<Arc<Cached>> {
        let cache = self.cache();
        if path == self.prefix {
            return cache.urls.get(&format!("{}{INDEX}", self.prefix)).cloned();
        }
        cache.urls.get(path).cloned()
    }

    /// The cached entry for a URL path, loading or refreshing it as needed.
    fn lookup(&self, path: &str) -> Option<Arc<Cached>> {
        let now_ms = self.now_ms();
        if let Some(entry) = self.cached_url(path).filter(|e| e.fresh(now_ms)) {
            return Some(entry);
        }
        // Resolve again: the file may have moved, or become a link out of the root.
        let file = self.resolve(path)?;
        let known = self.cache().files.get(&file).cloned();
        if let Some(entry) = known.filter(|e| e.fresh(now_ms)) {
            return Some(entry);
        }
        let url = self.plain_url(&file);
        let entry = Arc::new(Cached::load(file, url, now_ms)?);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.insert(entry.clone(), self.cache_bytes);
        Some(entry)
    }

    /// The URL path that names `file` with nothing to decode and nothing to collapse.
    fn plain_url(&self, file: &Path) -> Option<String> {
        let mut url = self.prefix.clone();
        for (i, part) in file.strip_prefix(&self.root).ok()?.iter().enumerate() {
            let part = part.to_str()?;
            let plain = part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !plain || part.starts_with('.') {
                return None;
            }
            if i > 0 {
                url.push('/');
            }
            url.push_str(part);
        }
        Some(url)
    }

    /// Answers a request for a path under the prefix; the prefix without its final
    /// slash is moved there for good (301), so the page's relative links resolve.
    pub fn serve(&self, req: &Request) -> Response {
        if req.path() == self.prefix.trim_end_matches('/') {
            return self.redirect_to_index(req, 301);
        }
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
        let entry = self.cached_url(req.path())?;
        if entry.len > CACHE_FILE_LIMIT || !entry.recently_checked(self.now_ms()) {
            return None;
        }
        Some(respond(&entry, req, || Some(entry.body.clone())))
    }

    /// Sends a GET or HEAD to the prefix, which serves the index page, with `status`
    /// (301 or 302); 405 for other methods.
    pub fn redirect_to_index(&self, req: &Request, status: u16) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return text(405, "Method Not Allowed\n").with_header("Allow", "GET, HEAD");
        }
        Response::empty(status).with_header("Location", self.prefix.clone())
    }

    /// The file a URL path names, or `None` when it is not a regular file inside root.
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let decoded = percent_decode(rest)?;
        let relative = if decoded.is_empty() { INDEX.to_string() } else { decoded };
        let mut candidate = self.root.clone();
        for part in relative.split('/') {
            if part.is_empty() {
                continue;
            }
            // Encoded separators, dot segments, dotfiles (`.git`, `.env`), NUL and
            // backslashes never name a file.
            if part.starts_with('.') || part.contains(['\\', '\0', '%']) {
                return None;
            }
            let comp = Path::new(part).components().next()?;
            if !matches!(comp, Component::Normal(_)) {
                return None;
            }
            candidate.push(part);
        }
        let real = fs::canonicalize(&candidate).ok()?;
        // A link inside the root may still lead to a dotfile.
        let hidden = real
            .strip_prefix(&self.root)
            .ok()?
            .iter()
            .any(|part| part.as_encoded_bytes().starts_with(b"."));
        (!hidden && real.is_file()).then_some(real)
    }
}

/// 304 when the client holds the current version; else 200 with the body, which is only
/// then copied or read (404 when it can no longer be read).
fn respond(entry: &Cached, req: &Request, body: impl FnOnce() -> Option<Vec<u8>>) -> Response {
    if not_modified(entry, req) {
        return Response::empty(304)
            .with_header("ETag", entry.etag.clone())
            .with_header("Last-Modified", entry.last_modified.clone())
            .with_header("Content-Security-Policy", CSP);
    }
    let Some(body) = body() else { return not_found() };
    Response::new(200, entry.content_type, body)
        .with_header("ETag", entry.etag.clone())
        .with_header("Last-Modified", entry.last_modified.clone())
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Content-Security-Policy", CSP)
}

/// Whether the client's copy is current (RFC 9110 §13.2.2): `If-None-Match` decides
/// when sent; otherwise `If-Modified-Since`, when it is a valid date not in the future.
fn not_modified(entry: &Cached, req: &Request) -> bool {
    if let Some(tags) = req.header("If-None-Match") {
        return tags.split(',').any(|t| t.trim() == entry.etag || t.trim() == "*");
    }
    let Some(since) = req.header("If-Modified-Since").and_then(parse_http_date) else {
        return false;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    since <= now && entry.mtime <= since
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

/// Unix seconds from an HTTP-date in any of its three forms (RFC 9110 §5.6.7):
/// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT` or
/// `Sun Nov  6 08:49:37 1994`; `None` for anything else or a date before 1970.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        [_, d, m, y, t, "GMT"] => (*d, *m, y.parse::<i64>().ok()?, *t),
        [_, dmy, t, "GMT"] => {
            let mut it = dmy.split('-');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            let yy: i64 = y.parse().ok().filter(|_| y.len() == 2)?;
            (d, m, if yy < 70 { 2000 + yy } else { 1900 + yy }, *t)
        }
        [_, m, d, t, y] => (*d, *m, y.parse::<i64>().ok()?, *t),
        _ => return None,
    };
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok().filter(|_| p.len() == 2));
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || sec > 60 || year < 1970 {
        return None;
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
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
    fn a_thousand_spellings_of_one_file_are_one_entry() {
        let (dir, f) = fixture();
        fs::write(dir.join("www/css/a.css"), vec![b'a'; 100_000]).unwrap();
        let mut spellings: Vec<String> =
            (0..1000).map(|n| format!("/im/www/v1/{}css/a.css", "/".repeat(n))).collect();
        spellings.push("/im/www/v1/c%73s//a%2Ecss".into());
        for path in &spellings {
            assert_eq!(get(&f, path).body.len(), 100_000, "{path}");
        }
        let cache = f.cache();
        assert_eq!((cache.files.len(), cache.urls.len()), (1, 1));
        assert!(cache.bytes < 100_000 + 2 * ENTRY_OVERHEAD, "{}", cache.bytes);
        assert!(cache.urls.contains_key("/im/www/v1/css/a.css"));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn the_cache_keeps_to_its_byte_budget() {
        let (dir, f) = fixture();
        let f = f.with_cache_bytes(25_000);
        for i in 0..10 {
            fs::write(dir.join(format!("www/f{i}.txt")), vec![b'0' + i; 10_000]).unwrap();
        }
        for round in 0..3 {
            for i in 0..10u8 {
                let r = get(&f, &format!("/im/www/v1/f{i}.txt"));
                assert_eq!(r.body, vec![b'0' + i; 10_000], "round {round}");
                let bytes = f.cache().bytes;
                assert!(bytes <= 25_000, "{bytes}");
            }
        }
        assert_eq!(f.cache().files.len(), 2);
        // Nothing cached at all: every file is still served.
        let none = StaticFiles::new(dir.join("www"), "/im/www/v1/").unwrap().with_cache_bytes(0);
        assert_eq!(get(&none, "/im/www/v1/css/a.css").body, b"body{}");
        assert!(none.cache().files.is_empty());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn dotfiles_are_never_served() {
        let (dir, f) = fixture();
        fs::create_dir_all(dir.join("www/.git")).unwrap();
        fs::write(dir.join("www/.git/config"), "secret").unwrap();
        fs::write(dir.join("www/.env"), "secret").unwrap();
        fs::write(dir.join("www/css/.hidden.css"), "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("www/.env"), dir.join("www/env.txt")).unwrap();
        for hidden in [
            "/im/www/v1/.env",
            "/im/www/v1/%2eenv",
            "/im/www/v1/%2Eenv",
            "/im/www/v1/.git/config",
            "/im/www/v1/%2egit/config",
            "/im/www/v1/css/.hidden.css",
            "/im/www/v1/css/%2Ehidden.css",
            "/im/www/v1/env.txt",
        ] {
            assert!(f.resolve(hidden).is_none(), "{hidden}");
            assert_eq!(get(&f, hidden).status, 404, "{hidden}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    fn conditional(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            target: path.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: crate::Listener::Plain,
        }
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn if_modified_since_counts_only_without_if_none_match() {
        let (dir, f) = fixture();
        let page = "/im/www/v1/css/a.css";
        let r = f.serve(&conditional(page, &[]));
        let (etag, modified) = (header(&r, "ETag").unwrap(), header(&r, "Last-Modified").unwrap());
        let mtime = parse_http_date(modified).unwrap();
        let earlier = http_date(mtime - 1);
        let future = http_date(mtime + 10 * 365 * 86_400);
        for (headers, status) in [
            (vec![("If-Modified-Since", modified)], 304),
            (vec![("If-Modified-Since", "Thu, 01 Jan 2099 00:00:00 GMT")], 200),
            (vec![("If-Modified-Since", future.as_str())], 200),
            (vec![("If-Modified-Since", earlier.as_str())], 200),
            (vec![("If-Modified-Since", "yesterday")], 200),
            (vec![("If-None-Match", "\"other\""), ("If-Modified-Since", modified)], 200),
            (vec![("If-None-Match", etag), ("If-Modified-Since", earlier.as_str())], 304),
        ] {
            let req = conditional(page, &headers);
            assert_eq!(f.serve(&req).status, status, "{headers:?}");
            assert_eq!(f.serve_hot(&req).expect("hot").status, status, "hot: {headers:?}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(784_111_777), "{form}");
        }
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_http_date(&http_date(secs)), Some(secs));
        }
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nox 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 99999999999999999999 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_carry_the_csp_and_the_bare_prefix_moves_for_good() {
        let (dir, f) = fixture();
        for path in ["/im/www/v1/", "/im/www/v1/chat.html", "/im/www/v1/css/a.css"] {
            let r = get(&f, path);
            assert_eq!(
                (r.status, header(&r, "Content-Security-Policy")),
                (200, Some(CSP)),
                "{path}"
            );
            assert_eq!(f.serve_hot(&conditional(path, &[])).expect("hot").headers, r.headers);
        }
        for path in ["/im/www/v1", "/im/www/v1?x=1"] {
            let r = get(&f, path);
            assert_eq!((r.status, header(&r, "Location")), (301, Some("/im/www/v1/")), "{path}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(now_http_date().ends_with("GMT"));
    }
}
