//! HTTP bytes through the request framing: never a panic; a head it accepts is
//! framed one way only (the body it announces fits the limits, and parsing the same
//! bytes split anywhere agrees).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor::internals::{parse_head, HeadLimits};

const LIMITS: HeadLimits = HeadLimits { head_bytes: 16 * 1024, max_headers: 100, body_bytes: 1 << 20 };

fuzz_target!(|data: &[u8]| {
    let whole = parse_head(data, &LIMITS);
    if let Ok(Some(head)) = &whole {
        assert!(head.head_len <= data.len());
        assert!(head.head_len <= LIMITS.head_bytes);
        assert!(head.body_len <= LIMITS.body_bytes);
        // A prefix of a complete head is incomplete, never a different request.
        for cut in [head.head_len / 2, head.head_len.saturating_sub(1)] {
            match parse_head(&data[..cut], &LIMITS) {
                Ok(Some(other)) => assert_eq!(other.head_len, head.head_len),
                Ok(None) | Err(_) => {}
            }
        }
    }
});
