//! A kit guest's kernel as QEMU boots it soonest: the ELF inside its
//! bzImage, entered directly through the PVH note (Linux's
//! `CONFIG_PVH`). A bzImage first runs the firmware's Linux loader and
//! then decompresses itself inside the guest; emulated (TCG), that is
//! about 0.4 s of each boot that the host does once per kernel instead
//! (Debian 12's cloud kernel: 1.79 s to its first process booted as a
//! bzImage, 1.36 s unpacked; five boots each).
//!
//! The kernel comes from a repository, so it is untrusted input here:
//! sizes are bounded, the header's offsets checked, and only an ELF that
//! carries the PVH entry note is used. Anything else (another compression,
//! a kernel without PVH) boots as the bzImage it is, as before.
//! Unpacked kernels are kept in `ROOT/cache/kernels/`, named by the
//! bzImage's SHA-256, written whole before they are renamed into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The largest bzImage read, and the largest kernel unpacked from one.
const MAX_BZIMAGE: u64 = 64 << 20;
const MAX_KERNEL: usize = 256 << 20;

/// The unpacked kernel of `bzimage` (made on first use, in `cache`), or
/// `None` where it boots as a bzImage. `sha256` is the bzImage's digest
/// where a repository's index says it (the cache verified the file
/// against it): then a kernel unpacked before is found without reading
/// the bzImage again; otherwise it is read and hashed here.
pub(super) fn kernel(bzimage: &Path, sha256: Option<&str>, cache: &Path) -> Option<PathBuf> {
    let known = sha256.filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(known) = known {
        let path = cache.join(format!("{}.elf", known.to_ascii_lowercase()));
        if path.is_file() {
            return Some(path);
        }
    }
    let size = std::fs::metadata(bzimage).ok()?.len();
    if size > MAX_BZIMAGE {
        return None;
    }
    let image = std::fs::read(bzimage).ok()?;
    let digest = format!("{:x}", Sha256::digest(&image));
    if known.is_some_and(|k| !k.eq_ignore_ascii_case(&digest)) {
        return None; // not the file the index names: boots as it is
    }
    let name = format!("{digest}.elf");
    let path = cache.join(&name);
    if path.is_file() {
        return Some(path);
    }
    let elf = unpack(&image)?;
    if !enters_by_pvh(&elf) {
        return None;
    }
    std::fs::create_dir_all(cache).ok()?;
    // A name of this start's own: VMs that share the kernel start at once,
    // and each may unpack it (the same bytes) and rename it into place.
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let tmp = cache.join(format!(
        ".{name}.{}-{}",
        std::process::id(),
        STARTS.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&elf)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    path.is_file().then_some(path)
}

/// The compressed kernel a bzImage carries (its setup header's payload,
/// boot protocol 2.08 and later), decompressed: LZ4 (Debian's) or gzip.
fn unpack(image: &[u8]) -> Option<Vec<u8>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
    if image.get(0x202..0x206)? != b"HdrS" || u16_at(0x206)? < 0x208 {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + usize::try_from(u32_at(0x248)?).ok()?;
    let length = usize::try_from(u32_at(0x24c)?).ok()?;
    let payload = image.get(start..start.checked_add(length)?)?;
    match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => unlz4_legacy(payload),
        [0x1f, 0x8b, ..] => gunzip(payload),
        _ => None,
    }
}

/// LZ4's legacy format (`lz4 -l`, what Linux's build makes): a magic, then
/// blocks of at most 8 MiB each, each after its compressed size; the
/// kernel's build appends the decompressed size, which ends the blocks.
fn unlz4_legacy(stream: &[u8]) -> Option<Vec<u8>> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut rest = stream.get(4..)?;
    while rest.len() >= 4 {
        let size = u32::from_le_bytes(rest[..4].try_into().ok()?);
        rest = &rest[4..];
        if size == MAGIC {
            continue; // another stream, concatenated
        }
        let size = usize::try_from(size).ok()?;
        if size > rest.len() {
            break; // the appended size: the end
        }
        if out.len() + BLOCK > MAX_KERNEL {
            return None;
        }
        let at = out.len();
        out.resize(at + BLOCK, 0);
        let n = lz4_flex::block::decompress_into(&rest[..size], &mut out[at..]).ok()?;
        out.truncate(at + n);
        rest = &rest[size..];
    }
    (!out.is_empty()).then_some(out)
}

fn gunzip(stream: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(stream)
        .take(MAX_KERNEL as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= MAX_KERNEL).then_some(out)
}

/// Whether `elf` is a 64-bit x86 ELF with Xen's PVH entry note
/// (`XEN_ELFNOTE_PHYS32_ENTRY`), which QEMU's `-kernel` boots directly.
fn enters_by_pvh(elf: &[u8]) -> bool {
    use object::elf::{FileHeader64, PT_NOTE};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    const PHYS32_ENTRY: u32 = 18;
    let Ok(header) = FileHeader64::<Endianness>::parse(elf) else {
        return false;
    };
    let Ok(endian) = header.endian() else {
        return false;
    };
    if header.e_machine(endian) != object::elf::EM_X86_64 {
        return false;
    }
    let Ok(segments) = header.program_headers(endian, elf) else {
        return false;
    };
    segments
        .iter()
        .filter(|segment| segment.p_type(endian) == PT_NOTE)
        .filter_map(|segment| segment.notes(endian, elf).ok().flatten())
        .any(|mut notes| {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == b"Xen" && note.n_type(endian) == PHYS32_ENTRY {
                    return true;
                }
            }
            false
        })
}

#[cfg(test)]
mod tests {
    use super::{enters_by_pvh, unlz4_legacy, unpack};

    /// A bzImage's first sectors: the setup header with its payload's
    /// place, then the payload.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 1u8;
        let mut image = vec![0; 1024];
        image[0x1f1] = setup_sects;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(&[0; 16]);
        image.extend_from_slice(payload);
        image
    }

    fn lz4_legacy(blocks: &[&[u8]]) -> Vec<u8> {
        let mut stream = vec![0x02, 0x21, 0x4c, 0x18];
        let mut total = 0u32;
        for block in blocks {
            let packed = lz4_flex::block::compress(block);
            stream.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            stream.extend_from_slice(&packed);
            total += block.len() as u32;
        }
        stream.extend_from_slice(&total.to_le_bytes());
        stream
    }

    #[test]
    fn a_bzimage_payload_unpacks_from_lz4_and_gzip() {
        let kernel: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (first, second) = kernel.split_at(150_000);
        assert_eq!(
            unpack(&bzimage(&lz4_legacy(&[first, second]))).unwrap(),
            kernel
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &kernel).unwrap();
        assert_eq!(unpack(&bzimage(&gz.finish().unwrap())).unwrap(), kernel);
    }

    #[test]
    fn what_is_not_a_well_formed_bzimage_boots_as_it_is() {
        let payload = lz4_legacy(&[b"kernel"]);
        // No header, an old boot protocol, a payload beyond the file, an
        // unknown compression, a block claiming more than is there.
        assert!(unpack(&payload).is_none());
        let mut old = bzimage(&payload);
        old[0x206..0x208].copy_from_slice(&0x207u16.to_le_bytes());
        assert!(unpack(&old).is_none());
        let mut beyond = bzimage(&payload);
        beyond[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&beyond).is_none());
        assert!(unpack(&bzimage(b"\x28\xb5\x2f\xfdzstd")).is_none());
        let mut cut = lz4_legacy(&[b"kernel kernel kernel"]);
        cut[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(unlz4_legacy(&cut).is_none());
    }

    #[test]
    fn a_kernel_the_index_names_is_found_without_reading_it_again() {
        let cache = tempfile::tempdir().unwrap();
        let digest = "ab".repeat(32);
        let gone = cache.path().join("no-such-vmlinuz");
        // Not unpacked yet: the bzImage is read, and it is not there.
        assert!(super::kernel(&gone, Some(&digest), cache.path()).is_none());
        let unpacked = cache.path().join(format!("{digest}.elf"));
        std::fs::write(&unpacked, b"elf").unwrap();
        assert_eq!(
            super::kernel(&gone, Some(&digest), cache.path()),
            Some(unpacked)
        );
        // A digest that is not one names no file.
        assert!(super::kernel(&gone, Some("../../etc/passwd"), cache.path()).is_none());
        // A file other than the one the index names boots as it is, even
        // where its own unpacked kernel is here.
        let other = cache.path().join("vmlinuz");
        let image = bzimage(&lz4_legacy(&[b"kernel"]));
        std::fs::write(&other, &image).unwrap();
        let own = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&image));
        std::fs::write(cache.path().join(format!("{own}.elf")), b"elf").unwrap();
        assert!(super::kernel(&other, Some(&own), cache.path()).is_some());
        assert!(super::kernel(&other, Some(&"cd".repeat(32)), cache.path()).is_none());
        assert!(super::kernel(&other, None, cache.path()).is_some());
    }

    #[test]
    fn only_an_elf_with_the_pvh_note_is_booted_unpacked() {
        assert!(!enters_by_pvh(b"\x7fELF not really"));
        assert!(!enters_by_pvh(&[0; 4096]));
    }
}
