//! Avro binary encoding primitives (spec: "Binary Encoding"): zig-zag varints,
//! length-prefixed bytes, little-endian floats. Both the typed codec and the
//! schema-resolution transcoder are built on these.

use super::DecodeError;

/// A cursor over an Avro datum.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes between `start` and the current position.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated { wanted: n, at: self.pos });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_long(&mut self) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated { wanted: 1, at: self.pos })?;
            self.pos += 1;
            if shift >= 64 {
                return Err(DecodeError::Invalid(format!("varint longer than 10 bytes at {}", self.pos)));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    pub fn read_int(&mut self) -> Result<i32, DecodeError> {
        let v = self.read_long()?;
        i32::try_from(v).map_err(|_| DecodeError::Invalid(format!("int out of range: {v}")))
    }

    /// A non-negative length or count.
    pub fn read_len(&mut self) -> Result<usize, DecodeError> {
        let v = self.read_long()?;
        let n = usize::try_from(v).map_err(|_| DecodeError::Invalid(format!("negative length {v}")))?;
        // A length can never exceed what is left; checking here keeps a hostile
        // length from driving a huge allocation.
        if n > self.remaining() {
            return Err(DecodeError::Truncated { wanted: n, at: self.pos });
        }
        Ok(n)
    }

    pub fn read_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.read_len()?;
        self.take(n)
    }

    pub fn read_str(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.read_bytes()?;
        std::str::from_utf8(b).map_err(|e| DecodeError::Invalid(format!("string is not UTF-8: {e}")))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::Invalid(format!("boolean byte {b}"))),
        }
    }

    pub fn read_f32(&mut self) -> Result<f32, DecodeError> {
        let b = self.take(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }
}

pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_matches_the_spec_examples() {
        // Spec table: 0→00, -1→01, 1→02, -2→03, 2→04, -64→7f, 64→80 01
        for (v, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (-2, vec![3]), (2, vec![4]), (-64, vec![0x7f]), (64, vec![0x80, 0x01])] {
            let mut out = Vec::new();
            write_long(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            assert_eq!(Reader::new(&out).read_long().unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, i64::from(i32::MIN), 1 << 40] {
            let mut out = Vec::new();
            write_long(&mut out, v);
            assert_eq!(Reader::new(&out).read_long().unwrap(), v);
        }
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        let mut out = Vec::new();
        write_long(&mut out, 1 << 40);
        assert!(matches!(Reader::new(&out).read_bytes(), Err(DecodeError::Truncated { .. })));
        let mut out = Vec::new();
        write_long(&mut out, -5);
        assert!(Reader::new(&out).read_bytes().is_err());
        assert!(Reader::new(&[0xff; 12]).read_long().is_err());
    }
}
