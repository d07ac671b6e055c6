//! Length-delimited framing for streamed protobuf messages: each frame is a
//! varint length followed by that many bytes of one message.

use bytes::{Buf, BytesMut};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("bad frame length: {0}")]
    BadLength(prost::DecodeError),
    #[error("bad frame body: {0}")]
    BadBody(prost::DecodeError),
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes one message as a frame.
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    msg.encode_length_delimited_to_vec()
}

/// Accumulates bytes from a stream and yields whole messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_frame,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, or `None` when more bytes are needed.
    pub fn next_message<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut peek = &self.buf[..];
        let before = peek.len();
        let len = match prost::encoding::decode_varint(&mut peek) {
            Ok(l) => l as usize,
            // A varint cut at the end of the buffer: wait for more.
            Err(_) if self.buf.len() < 10 => return Ok(None),
            Err(e) => return Err(FrameError::BadLength(e)),
        };
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                limit: self.max_frame,
            });
        }
        let header = before - peek.len();
        if self.buf.len() < header + len {
            return Ok(None);
        }
        self.buf.advance(header);
        let body = self.buf.split_to(len).freeze();
        M::decode(body).map(Some).map_err(FrameError::BadBody)
    }

    /// Call at end of stream: leftover bytes mean a cut frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingester::LabelNamesResponse;

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let msgs: Vec<LabelNamesResponse> = (0..5)
            .map(|i| LabelNamesResponse {
                names: vec![format!("n{i}"); i],
            })
            .collect();
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(encode_frame(m));
        }
        for chunk in [1usize, 2, 3, 7, 1000] {
            let mut d = FrameDecoder::new(1 << 20);
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message::<LabelNamesResponse>().unwrap() {
                    out.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(out, msgs);
        }
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let m = LabelNamesResponse {
            names: vec!["x".repeat(100)],
        };
        let wire = encode_frame(&m);
        let mut d = FrameDecoder::new(10);
        d.push(&wire);
        assert!(matches!(
            d.next_message::<LabelNamesResponse>(),
            Err(FrameError::TooLarge { .. })
        ));
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&wire[..wire.len() - 1]);
        assert!(d.next_message::<LabelNamesResponse>().unwrap().is_none());
        assert!(d.finish().is_err());
    }
}
