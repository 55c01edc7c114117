//! Newline framing for socket clients, with a length cap. A line that is
//! too long or not UTF-8 is reported and skipped and the stream goes on:
//! tokio-util's `FramedRead` ends the stream at the first such error, which
//! cost the client its connection.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What one read gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line, without its `\n` (or `\r\n`).
    Line(String),
    /// A line longer than the cap; reported as soon as it passes the cap,
    /// and the rest of it, up to the next `\n`, is skipped.
    TooLong,
    /// A line that is not UTF-8.
    NotUtf8,
}

/// Reads [`Frame`]s; holds at most `max` bytes of a line at a time.
pub struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
    /// In a too-long line: skip to its end.
    skipping: bool,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            line: Vec::new(),
            skipping: false,
            max,
        }
    }

    /// The next frame; `None` at the end of the stream (a last line without
    /// its `\n` still counts).
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if self.skipping || self.line.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let part = newline.unwrap_or(chunk.len());
            let mut frame = None;
            if !self.skipping {
                if self.line.len() + part > self.max {
                    // Give the memory back now: the line may be huge.
                    self.line = Vec::new();
                    self.skipping = true;
                    frame = Some(Frame::TooLong);
                } else {
                    self.line.extend_from_slice(&chunk[..part]);
                }
            }
            match newline {
                Some(at) => {
                    self.inner.consume(at + 1);
                    if !std::mem::take(&mut self.skipping) {
                        return Ok(Some(self.take()));
                    }
                    if frame.is_some() {
                        return Ok(frame);
                    }
                }
                None => {
                    self.inner.consume(part);
                    if frame.is_some() {
                        return Ok(frame);
                    }
                }
            }
        }
    }

    fn take(&mut self) -> Frame {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(line) => Frame::Line(line),
            Err(_) => Frame::NotUtf8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(f) = reader.next().await.expect("reading a slice") {
            out.push(f);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.into())
    }

    #[tokio::test]
    async fn lines_with_and_without_a_last_newline() {
        assert_eq!(
            frames(b"a\r\nbc\n\nd", 8).await,
            vec![line("a"), line("bc"), line(""), line("d")]
        );
        assert_eq!(frames(b"", 8).await, vec![]);
    }

    #[tokio::test]
    async fn a_too_long_line_is_reported_once_and_the_next_line_is_read() {
        assert_eq!(
            frames(b"12345678\n123456789\nok\n", 8).await,
            vec![line("12345678"), Frame::TooLong, line("ok")]
        );
        // Longer than the reader's buffer, and at the very end.
        let long = vec![b'x'; 100_000];
        let mut input = long.clone();
        input.extend_from_slice(b"\nok\n");
        input.extend_from_slice(&long);
        assert_eq!(
            frames(&input, 1000).await,
            vec![Frame::TooLong, line("ok"), Frame::TooLong]
        );
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_reported_and_the_next_line_is_read() {
        assert_eq!(
            frames(b"\xff\xfe\nok\n", 8).await,
            vec![Frame::NotUtf8, line("ok")]
        );
    }
}
