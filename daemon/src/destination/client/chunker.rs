//! [`Chunker`]: cuts a byte stream into parts of the sizes the uploader asks for.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::pipeline::ByteStream;

/// Cuts a byte stream into parts of a requested size. A stream chunk that is exactly a
/// part is passed on without a copy.
pub struct Chunker {
    input: ByteStream,
    leftover: Bytes,
}

impl Chunker {
    pub fn new(input: ByteStream) -> Self {
        Chunker {
            input,
            leftover: Bytes::new(),
        }
    }

    /// The next `size` bytes; fewer only at the end of the stream (empty after it).
    /// An error is the input's own.
    pub async fn read(&mut self, size: usize) -> io::Result<Bytes> {
        let mut part = BytesMut::new();
        loop {
            if !self.leftover.is_empty() {
                let want = size - part.len();
                if part.is_empty() && self.leftover.len() == want {
                    return Ok(std::mem::take(&mut self.leftover));
                }
                if part.capacity() == 0 {
                    part.reserve(size);
                }
                let n = want.min(self.leftover.len());
                part.extend_from_slice(&self.leftover.split_to(n));
                if part.len() == size {
                    return Ok(part.freeze());
                }
            }
            match self.input.next().await {
                Some(Ok(chunk)) => self.leftover = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(part.freeze()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_exact_parts() {
        let chunks: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; 7])),
            Ok(Bytes::from(vec![2u8; 3])),
            Ok(Bytes::from(vec![3u8; 5])),
        ];
        let mut r = Chunker::new(futures::stream::iter(chunks).boxed());
        assert_eq!(r.read(4).await.unwrap().len(), 4);
        let b = r.read(4).await.unwrap();
        assert_eq!(&b[..], &[1, 1, 1, 2]);
        assert_eq!(r.read(10).await.unwrap().len(), 7);
        assert!(r.read(4).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn input_errors_are_passed_on() {
        let chunks: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; 3])),
            Err(io::Error::other("source failed")),
        ];
        let mut r = Chunker::new(futures::stream::iter(chunks).boxed());
        let e = r.read(4).await.unwrap_err();
        assert_eq!(e.to_string(), "source failed");
    }
}
