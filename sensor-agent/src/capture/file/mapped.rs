//! Capture files read through read-only memory maps (`crowdflow-agent replay`): the reader
//! parses the page cache in place, where reading through a buffer had the kernel copy every
//! byte (a fifth of a replay's time, #19). ripgrep reads files the same way.
//!
//! The file is mapped a chunk at a time, so the process holds [`CHUNK`] bytes of it at most
//! (a whole-file map counted the file into the replay's resident memory).
//!
//! A mapped file that another process shrinks faults on the next read past its new end
//! (SIGBUS). The first map installs a handler that turns that into one clear line and exit
//! status 1 instead of a "Bus error" crash (safe Rust raises SIGBUS no other way).

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::sync::Once;

use memmap2::{Advice, Mmap, MmapOptions};

/// Bytes mapped at once: a multiple of every page size (4 KiB to 64 KiB), large enough that
/// the map calls cost nothing next to parsing, small next to a Pi's memory.
pub const CHUNK: u64 = 8 << 20;

/// A regular file read through successive read-only maps of [`CHUNK`] bytes.
///
/// A record that straddles two chunks is returned by [`BufRead::fill_buf`] in two parts, as
/// a `BufReader` returns a record that straddles its buffer; readers copy such a record.
pub struct MappedFile {
    file: File,
    /// The file's length when it was opened: a file that grows is read up to here (its
    /// last record may be cut: `capture_truncated`, as when reading through a buffer).
    len: u64,
    /// The current chunk and its offset in the file.
    map: Option<(u64, Mmap)>,
    /// Position in the current chunk.
    pos: usize,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl MappedFile {
    /// Reads `file` through maps, or gives it back where it cannot be mapped (a pipe, a
    /// FIFO, `/dev/stdin`, an empty file): the caller reads through a buffer then.
    pub fn new(file: File) -> Result<MappedFile, File> {
        match file.metadata() {
            Ok(meta) if meta.is_file() && meta.len() > 0 => {
                let mut mapped = MappedFile {
                    len: meta.len(),
                    file,
                    map: None,
                    pos: 0,
                };
                match mapped.map_at(0) {
                    Ok(()) => Ok(mapped),
                    Err(_) => Err(mapped.file),
                }
            }
            _ => Err(file),
        }
    }

    /// Maps the chunk at `offset` (a multiple of [`CHUNK`]), unmapping the previous one.
    fn map_at(&mut self, offset: u64) -> io::Result<()> {
        exit_cleanly_on_sigbus();
        self.map = None;
        let len = usize::try_from(CHUNK.min(self.len - offset))
            .map_err(|_| io::Error::other("chunk exceeds the address space"))?;
        // SAFETY: the map is read-only and private to this process, and no `&mut` to it is
        // ever made. A file that another process *shrinks* while it is mapped makes reads
        // past its new end fault (SIGBUS): replay is for finished captures, and capture
        // tools rotate to new files rather than truncate (tcpdump -C/-G, dumpcap -b);
        // docs/installing-a-sensor.md says to copy a capture a tool may still rewrite, and
        // `exit_cleanly_on_sigbus` makes the fault one clear error line.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map(&self.file)? };
        // Read-ahead for one front-to-back pass; advice only, so a refusal changes nothing.
        let _ = map.advise(Advice::Sequential);
        self.map = Some((offset, map));
        self.pos = 0;
        Ok(())
    }
}

/// What the SIGBUS handler prints.
const SHRUNK: &[u8] = b"crowdflow-agent: a capture file shrank while replay read it (truncated \
or rewritten by another process): copy a capture that a tool may still rewrite, then replay the copy\n";

/// Installs, once, the SIGBUS handler of this module.
fn exit_cleanly_on_sigbus() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: `on_sigbus` only calls async-signal-safe functions (write, _exit); the
        // sigaction struct is fully initialized (zeroed, then the handler and an empty mask).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_sigbus(_signal: libc::c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe; SHRUNK is a static buffer.
    unsafe {
        libc::write(2, SHRUNK.as_ptr().cast(), SHRUNK.len());
        libc::_exit(1);
    }
}

impl BufRead for MappedFile {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let next = match &self.map {
            Some((offset, map)) if self.pos >= map.len() => Some(offset + map.len() as u64),
            _ => None,
        };
        if let Some(next) = next
            && next < self.len
        {
            self.map_at(next)?;
        }
        Ok(match &self.map {
            Some((_, map)) => map.get(self.pos..).unwrap_or_default(),
            None => &[],
        })
    }

    fn consume(&mut self, amount: usize) {
        self.pos = self.pos.saturating_add(amount);
    }
}

impl Read for MappedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_reads_the_same_through_maps_across_chunk_edges() {
        let mut file = tempfile::tempfile().expect("temp file");
        let bytes: Vec<u8> = (0..CHUNK + 12_345).map(|i| (i % 251) as u8).collect();
        file.write_all(&bytes).expect("write");
        let mut mapped = MappedFile::new(file).expect("a regular file maps");
        let mut back = Vec::new();
        // Odd-sized reads straddle the chunk edge.
        let mut piece = [0u8; 4093];
        loop {
            let n = mapped.read(&mut piece).expect("read");
            if n == 0 {
                break;
            }
            back.extend_from_slice(&piece[..n]);
        }
        assert_eq!(back.len(), bytes.len());
        assert!(back == bytes);
    }

    #[test]
    fn an_empty_file_is_given_back() {
        let file = tempfile::tempfile().expect("temp file");
        assert!(MappedFile::new(file).is_err());
    }
}
