//! The strict body reader [`super::decode`] hands to apache-avro: the bytes of one Avro body, whose
//! end inside a value is an error rather than a null.

use std::io::{self, Read};

/// The body as apache-avro reads it, with the end of the body made an error.
///
/// apache-avro takes an end of input where a union's branch index should be for the null branch,
/// so a body cut short before its last nullable fields would decode, those fields null (a
/// truncated record would erase data in the sinks). Reading past the end here fails with an error
/// of another kind than `UnexpectedEof`, which apache-avro passes on like any read error, and
/// `ran_out` tells [`decode`](super::decode) why.
pub(super) struct StrictBody<'a> {
    pub(super) rest: &'a [u8],
    pub(super) ran_out: bool,
}

impl Read for StrictBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.ran_out = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the body ends inside a value"));
        }
        let n = buf.len().min(self.rest.len());
        let (head, rest) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = rest;
        Ok(n)
    }
}
