//! The response body: a fixed list of frames written one by one, with an optional pause between frames
//! and an optional "hang" point after which the body never finishes.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// How a response body is cut into HTTP body frames (each frame becomes one write, and one chunk of a
/// chunked response). The bytes are the same in every mode; only the framing and timing change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkMode {
    /// One frame per SSE event, split after each blank line (see [`crate::split_sse_events`]).
    /// For a non-SSE body this is the same as [`ChunkMode::Whole`].
    Event,
    /// Frames of exactly N bytes (the last one may be shorter).
    Bytes(NonZeroUsize),
    /// The whole body in one frame.
    Whole,
}

impl std::str::FromStr for ChunkMode {
    type Err = String;

    /// Parses `event`, `whole` or `bytes:<N>` (N > 0), as accepted by the `x-mock-chunk` header.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        match value {
            "event" => Ok(Self::Event),
            "whole" => Ok(Self::Whole),
            _ => value
                .strip_prefix("bytes:")
                .and_then(|n| n.trim().parse::<NonZeroUsize>().ok())
                .map(Self::Bytes)
                .ok_or_else(|| {
                    format!("invalid chunk mode {value:?}: expected event, whole or bytes:<N>")
                }),
        }
    }
}

/// Cuts `body` into frames according to `mode`; `events` is the SSE split of `body` (empty for non-SSE).
pub(crate) fn frames_for(body: &Bytes, events: &Arc<[Bytes]>, mode: ChunkMode) -> Arc<[Bytes]> {
    match mode {
        ChunkMode::Event if !events.is_empty() => Arc::clone(events),
        ChunkMode::Event | ChunkMode::Whole => {
            if body.is_empty() {
                Arc::from([])
            } else {
                Arc::from([body.clone()])
            }
        }
        ChunkMode::Bytes(size) => {
            let size = size.get();
            (0..body.len())
                .step_by(size)
                .map(|start| body.slice(start..body.len().min(start + size)))
                .collect()
        }
    }
}

/// Gzip-encodes a sequence of frames as one gzip stream, keeping the framing: after each frame the encoder
/// is sync-flushed, so each output frame decodes to exactly the matching input frame. The gzip trailer is
/// appended to the last frame.
pub(crate) fn gzip_frames(frames: &[Bytes]) -> std::io::Result<Arc<[Bytes]>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut out = Vec::with_capacity(frames.len().max(1));
    for frame in frames {
        encoder.write_all(frame)?;
        encoder.flush()?;
        out.push(Bytes::from(std::mem::take(encoder.get_mut())));
    }
    let trailer = encoder.finish()?;
    match out.last_mut() {
        Some(last) => {
            let mut joined = Vec::with_capacity(last.len() + trailer.len());
            joined.extend_from_slice(last);
            joined.extend_from_slice(&trailer);
            *last = Bytes::from(joined);
        }
        None => out.push(Bytes::from(trailer)),
    }
    Ok(out.into())
}

/// A response body made of pre-computed frames.
///
/// Frames are yielded in order, with `frame_delay` between consecutive frames (none before the first).
/// With a hang point set, the body yields that many frames and then stays pending forever (the
/// connection stays open with an unfinished body). A body that knows its length
/// ([`MockBody::with_known_length`]) reports an exact size hint, so hyper sends `content-length`; otherwise
/// the response uses chunked transfer encoding, like a streaming provider.
#[derive(Debug)]
pub struct MockBody {
    frames: Arc<[Bytes]>,
    next: usize,
    frame_delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    hang_after: Option<usize>,
    known_length: bool,
}

impl MockBody {
    /// A body of `frames`, sent with chunked transfer encoding.
    pub fn new(frames: Arc<[Bytes]>) -> Self {
        Self {
            frames,
            next: 0,
            frame_delay: Duration::ZERO,
            sleep: None,
            hang_after: None,
            known_length: false,
        }
    }

    /// A body of a single frame (nothing if `bytes` is empty), sent with `content-length`.
    pub fn full(bytes: Bytes) -> Self {
        let frames: Arc<[Bytes]> = if bytes.is_empty() {
            Arc::from([])
        } else {
            Arc::from([bytes])
        };
        Self::new(frames).with_known_length()
    }

    /// Pause `delay` between frames.
    #[must_use]
    pub fn with_frame_delay(mut self, delay: Duration) -> Self {
        self.frame_delay = delay;
        self
    }

    /// After `frames` frames, never yield anything again and never end.
    #[must_use]
    pub fn with_hang_after(mut self, frames: usize) -> Self {
        self.hang_after = Some(frames);
        self
    }

    /// Report the exact length so that the response carries `content-length` (ignored when hanging).
    #[must_use]
    pub fn with_known_length(mut self) -> Self {
        self.known_length = true;
        self
    }

    fn remaining_len(&self) -> u64 {
        self.frames
            .get(self.next..)
            .unwrap_or_default()
            .iter()
            .map(|frame| frame.len() as u64)
            .sum()
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this
            .hang_after
            .is_some_and(|hang_after| this.next >= hang_after)
        {
            // Deliberately never woken: the body stays unfinished until the connection is dropped.
            return Poll::Pending;
        }
        let Some(frame) = this.frames.get(this.next).cloned() else {
            return if this.hang_after.is_some() {
                Poll::Pending
            } else {
                Poll::Ready(None)
            };
        };
        if this.next > 0 && !this.frame_delay.is_zero() {
            let delay = this.frame_delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.hang_after.is_none() && self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        if self.known_length && self.hang_after.is_none() {
            SizeHint::with_exact(self.remaining_len())
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn parses_chunk_modes() {
        assert_eq!("event".parse::<ChunkMode>(), Ok(ChunkMode::Event));
        assert_eq!("whole".parse::<ChunkMode>(), Ok(ChunkMode::Whole));
        assert_eq!("bytes:7".parse::<ChunkMode>(), Ok(ChunkMode::Bytes(nz(7))));
        assert!("bytes:0".parse::<ChunkMode>().is_err());
        assert!("bytes".parse::<ChunkMode>().is_err());
        assert!("lines".parse::<ChunkMode>().is_err());
    }

    #[test]
    fn byte_frames_cover_the_body() {
        let body = Bytes::from_static(b"0123456789");
        let frames = frames_for(&body, &Arc::from([]), ChunkMode::Bytes(nz(4)));
        assert_eq!(
            frames.iter().map(|f| f.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert_eq!(frames.concat(), body.to_vec());
        assert!(frames_for(&Bytes::new(), &Arc::from([]), ChunkMode::Whole).is_empty());
    }

    #[test]
    fn gzip_frames_decode_frame_by_frame() {
        let frames = [
            Bytes::from_static(b"data: one\n\n"),
            Bytes::from_static(b"data: two\n\n"),
        ];
        let gz = gzip_frames(&frames).unwrap();
        assert_eq!(gz.len(), 2);
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&gz.concat()[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, "data: one\n\ndata: two\n\n");
        // The first frame alone already decodes to the first event (sync flush).
        let mut partial = flate2::write::GzDecoder::new(Vec::new());
        partial.write_all(&gz[0]).unwrap();
        partial.flush().unwrap();
        assert_eq!(partial.get_ref().as_slice(), b"data: one\n\n");
    }
}
