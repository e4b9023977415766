//! An HTTP response built by the application; the reactor adds `Content-Length`,
//! `Date`-free framing headers and `Connection` and writes it.

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers other than `Content-Length` and `Connection`, which the reactor writes.
    pub headers: Vec<(&'static str, String)>,
    /// The body. For a `HEAD` request the reactor sends the length but not the bytes.
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    /// A response with `status`, one `Content-Type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
            close: false,
        }
    }

    /// An empty response with `status` (e.g. 304).
    pub fn empty(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new(), close: false }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks the connection to be closed after this response.
    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }
}

/// The reason phrase of a status code the reactor or application uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
