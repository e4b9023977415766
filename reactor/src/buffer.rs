//! A byte buffer consumed from the front, that gives its memory back when empty so an
//! idle connection holds no buffer at all.

/// Capacity kept across an empty buffer; more is released.
const KEEP: usize = 4 * 1024;

#[derive(Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    pos: usize,
}

impl Buffer {
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// The vector to append to directly (the unconsumed part is at its end).
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
        if self.pos == self.data.len() {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
        if self.data.capacity() > KEEP {
            self.data = Vec::new();
        }
    }

    /// Moves unconsumed bytes to the front once the consumed part dominates.
    pub fn compact(&mut self) {
        if self.pos > 0 && self.pos >= self.data.len() / 2 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        if self.data.is_empty() && self.data.capacity() > KEEP {
            self.data = Vec::new();
        }
    }

    /// Takes the unconsumed bytes out.
    pub fn take(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.data);
        v.drain(..self.pos);
        self.pos = 0;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_compact_take() {
        let mut b = Buffer::default();
        b.extend(b"hello world");
        b.consume(6);
        assert_eq!(b.as_slice(), b"world");
        b.compact();
        assert_eq!(b.as_slice(), b"world");
        assert_eq!(b.take(), b"world");
        assert!(b.is_empty());
        b.extend(&[0; 10_000]);
        b.consume(10_000);
        assert_eq!(b.vec().capacity(), 0, "memory given back when empty");
    }
}
