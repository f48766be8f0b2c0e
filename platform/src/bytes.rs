//! A file's bytes: memory-mapped with the `mmap` feature (memmap2), read
//! into memory without it, so a build without memmap2 still loads models.

use std::path::Path;

/// The bytes of a file, mapped or owned.
pub enum FileBytes {
    #[cfg(feature = "mmap")]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(feature = "mmap")]
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// The bytes of the file at `path`: a read-only map with the `mmap`
/// feature, a copy in memory without it.
pub fn map_file(path: &Path) -> std::io::Result<FileBytes> {
    #[cfg(feature = "mmap")]
    {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and private to this process. If
        // another process truncates or rewrites the file while it is
        // mapped, reads may fault or see new bytes; every model loader that
        // maps files shares this caveat, and the alternative (reading 100s
        // of MB into memory) defeats the purpose.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(FileBytes::Mapped(map))
    }
    #[cfg(not(feature = "mmap"))]
    {
        std::fs::read(path).map(FileBytes::Owned)
    }
}
