//! The socket under an HTTP/1 connection, with two small additions:
//!
//! - each read tells the connection's clock that bytes arrived (the start
//!   of a next request's head, and so its header deadline);
//! - the answers hyper writes by itself to a request it cannot parse (400,
//!   414 URI too long, 431 headers too large) get a one-line body saying
//!   what was wrong, instead of none. hyper offers no hook for those
//!   answers; they are the only bodiless 4xx answers the server sends (every
//!   answer of ours has a body), and hyper closes the connection after
//!   them, so adding a body cannot confuse the client about where the next
//!   answer starts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::clock::ConnectionClock;

/// A socket that reports reads and explains hyper's own error answers.
#[derive(Debug)]
pub(crate) struct Http1Io<IO> {
    inner: IO,
    clock: Arc<ConnectionClock>,
    max_header_bytes: usize,
    /// An explained answer not yet fully written.
    pending: Vec<u8>,
    written: usize,
}

impl<IO> Http1Io<IO> {
    pub(crate) fn new(inner: IO, clock: Arc<ConnectionClock>, max_header_bytes: usize) -> Self {
        Self {
            inner,
            clock,
            max_header_bytes,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Http1Io<IO> {
    /// Writes what is left of an explained answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Http1Io<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if read.is_ok() && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        Poll::Ready(read)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Http1Io<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(explained) = explain(buf, this.max_header_bytes) {
            // Taken whole; written from `pending`, flushed before anything else.
            this.pending = explained;
            if let Poll::Ready(Err(err)) = this.poll_pending(cx) {
                return Poll::Ready(Err(err));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes a whole answer head in one buffer,
    // which `explain` can recognise.
}

/// hyper's bodiless answer to an unparsable request, rewritten with a body;
/// `None` for anything else.
fn explain(written: &[u8], max_header_bytes: usize) -> Option<Vec<u8>> {
    const EMPTY: &str = "content-length: 0\r\n";
    // Most writes are bodies or heads of answers already good: only a
    // buffer that begins with a status line is worth reading as text.
    if !written.starts_with(b"HTTP/1.") {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let status_line = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let reason = match status_line.get(..4)? {
        "400 " => {
            "the request could not be parsed as HTTP/1.1 (request line or a header is malformed)"
                .to_owned()
        }
        "414 " => "the request URI is too long".to_owned(),
        "431 " => format!(
            "the request head is too large: at most {max_header_bytes} bytes (max_header_bytes) and 100 headers"
        ),
        _ => return None,
    };
    // Exactly a head with an empty body, nothing after it.
    if !head.ends_with("\r\n\r\n") || head.matches("\r\n\r\n").count() != 1 {
        return None;
    }
    let at = head.find(EMPTY)?;
    let body = format!("{reason}\n");
    let mut rewritten = String::with_capacity(head.len() + body.len() + 64);
    rewritten.push_str(&head[..at]);
    rewritten.push_str(&format!(
        "content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        body.len()
    ));
    rewritten.push_str(&head[at + EMPTY.len()..]);
    rewritten.push_str(&body);
    Some(rewritten.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_get_a_reason() {
        let head = "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 10:00:00 GMT\r\n\r\n";
        let explained =
            String::from_utf8(explain(head.as_bytes(), 16384).expect("rewritten")).expect("utf-8");
        let (new_head, body) = explained.split_once("\r\n\r\n").expect("a head");
        assert!(body.contains("16384 bytes (max_header_bytes)"), "{body}");
        assert!(
            new_head.contains(&format!("content-length: {}", body.len())),
            "{new_head}"
        );
        assert!(new_head.contains("date: Sat") && new_head.contains("connection: close"));
    }

    #[test]
    fn other_answers_are_left_alone() {
        for written in [
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\ninvalid: xyz",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "some body bytes",
        ] {
            assert_eq!(explain(written.as_bytes(), 8192), None, "{written}");
        }
    }
}
