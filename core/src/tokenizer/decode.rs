//! Decoding: ids to UTF-8, whole or token by token.

use super::index::SPACE_ESC;
use super::{check_len, PieceKind, Tokenizer, TokenizerError};

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Collects valid UTF-8 into a small stack buffer and hands it to the sink
/// as `&str` chunks.
struct Emit<F: FnMut(&str)> {
    buf: [u8; 128],
    len: usize,
    sink: F,
}

impl<F: FnMut(&str)> Emit<F> {
    fn new(sink: F) -> Self {
        Self {
            buf: [0; 128],
            len: 0,
            sink,
        }
    }

    /// `c` is one complete, valid UTF-8 character (at most 4 bytes).
    #[inline]
    fn char(&mut self, c: &[u8]) {
        if self.len + c.len() > self.buf.len() {
            self.flush();
        }
        self.buf[self.len..self.len + c.len()].copy_from_slice(c);
        self.len += c.len();
    }

    fn flush(&mut self) {
        if self.len > 0 {
            // Always valid: only whole characters are ever added.
            if let Ok(s) = core::str::from_utf8(&self.buf[..self.len]) {
                (self.sink)(s);
            }
            self.len = 0;
        }
    }
}

/// Incremental lossy UTF-8 validation: whole characters pass, each maximal
/// invalid subpart becomes U+FFFD, an incomplete tail waits for more bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Utf8Lossy {
    buf: [u8; 4],
    len: u8,
    need: u8,
}

impl Utf8Lossy {
    #[inline]
    fn feed<F: FnMut(&str)>(&mut self, b: u8, out: &mut Emit<F>) {
        loop {
            if self.len == 0 {
                let need = match b {
                    0x00..=0x7F => {
                        out.char(&[b]);
                        return;
                    }
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => {
                        out.char(REPLACEMENT);
                        return;
                    }
                };
                self.buf[0] = b;
                self.len = 1;
                self.need = need;
                return;
            }
            let ok = match (self.len, self.buf[0]) {
                (1, 0xE0) => (0xA0..=0xBF).contains(&b),
                (1, 0xED) => (0x80..=0x9F).contains(&b),
                (1, 0xF0) => (0x90..=0xBF).contains(&b),
                (1, 0xF4) => (0x80..=0x8F).contains(&b),
                _ => (0x80..=0xBF).contains(&b),
            };
            if ok {
                self.buf[self.len as usize] = b;
                self.len += 1;
                if self.len == self.need {
                    let n = self.need as usize;
                    let c = self.buf;
                    out.char(&c[..n]);
                    self.len = 0;
                }
                return;
            }
            // The pending bytes are a maximal invalid subpart; `b` starts afresh.
            out.char(REPLACEMENT);
            self.len = 0;
        }
    }

    fn finish<F: FnMut(&str)>(&mut self, out: &mut Emit<F>) {
        if self.len > 0 {
            out.char(REPLACEMENT);
            self.len = 0;
        }
    }
}

/// Token-by-token decoding for printing as tokens arrive: holds back an
/// incomplete UTF-8 sequence (e.g. the first `<0xNN>` byte pieces of an
/// emoji) until the token that completes it, so chunks are always whole
/// characters. Call `finish` at the end of the stream.
#[derive(Clone, Copy, Debug)]
pub struct StreamDecoder<'a> {
    tok: Tokenizer<'a>,
    skip_special: bool,
    utf8: Utf8Lossy,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that skips special tokens (BOS, EOS, `<end_of_turn>`...),
    /// which is what printing generated text wants.
    pub fn new(tok: Tokenizer<'a>) -> Self {
        Self::with_skip_special(tok, true)
    }

    /// A decoder that renders special tokens as their text unless `skip_special`.
    pub fn with_skip_special(tok: Tokenizer<'a>, skip_special: bool) -> Self {
        Self {
            tok,
            skip_special,
            utf8: Utf8Lossy::default(),
        }
    }

    /// Whether bytes of an incomplete character are being held back.
    pub fn has_pending(&self) -> bool {
        self.utf8.len > 0
    }

    /// Decodes one token, handing zero or more `&str` chunks to `sink`.
    pub fn push_with(&mut self, id: u32, sink: impl FnMut(&str)) {
        let mut out = Emit::new(sink);
        self.push_inner(id, &mut out);
        out.flush();
    }

    /// Ends the stream: held-back bytes become U+FFFD. The decoder can be reused.
    pub fn finish_with(&mut self, sink: impl FnMut(&str)) {
        let mut out = Emit::new(sink);
        self.utf8.finish(&mut out);
        out.flush();
    }

    /// Decodes one token: the text that is complete so far (often empty).
    #[cfg(feature = "alloc")]
    pub fn push(&mut self, id: u32) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        self.push_with(id, |c| s.push_str(c));
        s
    }

    /// Ends the stream: U+FFFD for held-back bytes, else empty.
    #[cfg(feature = "alloc")]
    pub fn finish(&mut self) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        self.finish_with(|c| s.push_str(c));
        s
    }

    fn push_inner<F: FnMut(&str)>(&mut self, id: u32, out: &mut Emit<F>) {
        let tok = &self.tok;
        let Some(e) = tok.entries.get(id as usize) else {
            // Not a token of this vocabulary.
            self.utf8.finish(out);
            out.char(REPLACEMENT);
            return;
        };
        let text = tok.entry_bytes(e).unwrap_or(&[]);
        if self.skip_special
            && (e.kind.is_special()
                || id == tok.meta.bos
                || id == tok.meta.eos
                || Some(id) == tok.meta.pad
                || (e.kind == PieceKind::UserDefined && is_protocol_marker(text)))
        {
            return;
        }
        if e.kind == PieceKind::Byte {
            if let Some(b) = super::parse_byte_piece(text) {
                self.utf8.feed(b, out);
                return;
            }
        }
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(&SPACE_ESC) {
                self.utf8.feed(b' ', out);
                i += 3;
            } else {
                self.utf8.feed(text[i], out);
                i += 1;
            }
        }
    }
}

/// Whether a user-defined piece is a marker of the model's input protocol
/// rather than text: `<start_of_image>`, `<end_of_image>`,
/// `<image_soft_token>`, `[multimodal]`, `[@BOS@]`. Gemma's vocabularies
/// store these as user-defined (so they match whole in text), next to
/// pieces that are text (`<table>`, `<b>`, runs of spaces or newlines):
/// the shapes below tell them apart, and a base model that samples one
/// mid-sentence should not print it.
pub(super) fn is_protocol_marker(text: &[u8]) -> bool {
    let tag = |open: u8, close: u8| {
        text.len() > 2
            && text[0] == open
            && text[text.len() - 1] == close
            && !text.iter().any(u8::is_ascii_whitespace)
    };
    (tag(b'<', b'>')
        && (text.starts_with(b"<start_of_")
            || text.starts_with(b"<end_of_")
            || text.ends_with(b"_soft_token>")))
        || tag(b'[', b']')
}

impl<'a> Tokenizer<'a> {
    /// Decodes `ids`, handing the text to `sink` in `&str` chunks. With
    /// `skip_special`, control/unknown/unused pieces and BOS/EOS/PAD are
    /// dropped; otherwise they appear as their text (`<end_of_turn>`).
    pub fn decode_with(&self, ids: &[u32], skip_special: bool, sink: impl FnMut(&str)) {
        let mut dec = StreamDecoder::with_skip_special(*self, skip_special);
        let mut out = Emit::new(sink);
        for &id in ids {
            dec.push_inner(id, &mut out);
        }
        dec.utf8.finish(&mut out);
        out.flush();
    }

    /// The exact byte length of `decode_with`'s output.
    pub fn decode_len(&self, ids: &[u32], skip_special: bool) -> usize {
        let mut n = 0;
        self.decode_with(ids, skip_special, |s| n += s.len());
        n
    }

    /// Decodes into `out` and returns the text written. When `out` is too
    /// short, the error's `needed` is the exact length.
    pub fn decode_into<'o>(
        &self,
        ids: &[u32],
        skip_special: bool,
        out: &'o mut [u8],
    ) -> Result<&'o str, TokenizerError> {
        let mut n = 0usize;
        let cap = out.len();
        self.decode_with(ids, skip_special, |s| {
            if let Some(dst) = out.get_mut(n..n + s.len()) {
                dst.copy_from_slice(s.as_bytes());
            }
            n += s.len();
        });
        check_len("decode output", cap, n)?;
        core::str::from_utf8(&out[..n])
            .map_err(|_| TokenizerError::BadIndex("decode produced invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(bytes: &[u8], out_buf: &mut [u8]) -> usize {
        let mut n = 0;
        {
            let mut out = Emit::new(|s: &str| {
                out_buf[n..n + s.len()].copy_from_slice(s.as_bytes());
                n += s.len();
            });
            let mut u = Utf8Lossy::default();
            for &b in bytes {
                u.feed(b, &mut out);
            }
            u.finish(&mut out);
            out.flush();
        }
        n
    }

    #[test]
    fn matches_std_lossy_on_tricky_inputs() {
        extern crate std;
        use std::string::String;
        let cases: &[&[u8]] = &[
            b"abc",
            b"\xC3\xA9",
            b"\xC3",
            b"\xC3a",
            b"\xE2\x82",
            b"\xE2\x82\xAC",
            b"\xE0\x80\x80",
            b"\xED\xA0\x80",
            b"\xF0\x9F\x99\x82",
            b"\xF0\x9F\x99",
            b"\xF4\x90\x80\x80",
            b"\xF5\x80",
            b"\xC0\xAF",
            b"\x80\x80abc\xFF",
            b"a\xF0\x9Fb\xE2\x96\x81",
        ];
        for c in cases {
            let mut buf = [0u8; 256];
            let n = lossy(c, &mut buf);
            let want = String::from_utf8_lossy(c);
            assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), want, "{c:?}");
        }
    }
}
