//! Snapshots of the graph: hnsw_rs' `file_dump` files plus a manifest written last, atomically.
//!
//! Layout of the snapshot directory:
//!
//! ```text
//! MANIFEST                    key=value lines; its rename is the commit point
//! snap-<last_id>-<t>.hnsw.graph, snap-<last_id>-<t>.hnsw.data     files named by the manifest
//! ```
//!
//! Save dumps under a fresh basename, fsyncs the files, writes `MANIFEST.tmp`, fsyncs it, renames
//! it over `MANIFEST` and fsyncs the directory; only then are older dumps removed. A crash at any
//! point leaves either the old or the new snapshot complete. Load checks sizes and blake3 hashes of
//! both files against the manifest before handing them to hnsw_rs (whose loader asserts and
//! panics on malformed input), and still runs the loader under `catch_unwind`.
//!
//! Encrypted snapshots (a keyring with a key, see `crypto`): hnsw_rs can only dump to and load
//! from files named `<dir>/<basename>.hnsw.{graph,data}`, so the dump goes into a private scratch
//! directory whose two names are symlinks to memfds (on Linux): the plaintext stays in memory.
//! The sealed files (AES-256-GCM, bound to their kind and basename) are what lands in the
//! snapshot directory, and the manifest names the key id (`encrypted=`). Loading decrypts into
//! memfds the same way. On other systems the scratch names are ordinary files, deleted right
//! after use. The manifest's sizes and hashes are those of the sealed files.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hnsw_rs::prelude::{AnnT, HnswIo};

use super::{CosineDistance, IndexError, IndexParams, VectorIndex, DIMS};
use crate::crypto::{self, Keyring};

const MANIFEST: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const FORMAT_VERSION: &str = "1";
/// The two files of a dump.
const KINDS: [&str; 2] = ["graph", "data"];
/// Prefix of scratch directories (never matched by the `snap-` cleanup).
const SCRATCH_PREFIX: &str = ".scratch-";

/// Associated data of a sealed snapshot file: a sealed graph cannot pass for a data file or for
/// another snapshot's file.
fn snapshot_aad(kind: &str, basename: &str) -> Vec<u8> {
    format!("index-snapshot\0{kind}\0{basename}").into_bytes()
}

/// A private directory in which `<basename>.hnsw.{graph,data}` hold plaintext for hnsw_rs: on
/// Linux symlinks to memfds (nothing reaches the disk), elsewhere plain files. Removed on drop.
struct Scratch {
    dir: std::path::PathBuf,
    basename: String,
    #[cfg(target_os = "linux")]
    _memfds: Vec<std::os::fd::OwnedFd>,
}

impl Scratch {
    fn new(parent: &Path, basename: &str) -> Result<Scratch, IndexError> {
        // Leftovers of an earlier process that crashed (on Linux they hold symlinks at most).
        // This process's own may be in use by a concurrent save or load: left alone.
        let own = format!("{SCRATCH_PREFIX}{}-", std::process::id());
        for entry in fs::read_dir(parent)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(SCRATCH_PREFIX) && !name.starts_with(&own) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = parent.join(format!("{SCRATCH_PREFIX}{}-{stamp}", std::process::id()));
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        #[cfg(target_os = "linux")]
        let mut memfds = Vec::new();
        #[cfg(target_os = "linux")]
        for kind in KINDS {
            use std::os::fd::AsRawFd;
            let fd = rustix::fs::memfd_create(
                format!("sluice-snapshot-{kind}"),
                rustix::fs::MemfdFlags::CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
            std::os::unix::fs::symlink(target, dir.join(format!("{basename}.hnsw.{kind}")))?;
            memfds.push(fd);
        }
        Ok(Scratch {
            dir,
            basename: basename.to_string(),
            #[cfg(target_os = "linux")]
            _memfds: memfds,
        })
    }

    fn file(&self, kind: &str) -> std::path::PathBuf {
        self.dir.join(format!("{}.hnsw.{kind}", self.basename))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove snapshot scratch directory");
        }
    }
}

/// What a saved snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Every entry id `<= last_id` that the caller inserted is in the snapshot.
    pub last_id: u64,
    /// Points in the graph.
    pub count: usize,
    /// Bytes of the graph and data files together.
    pub bytes: u64,
}

/// Size and blake3 hash of a file, read in 1 MiB blocks.
fn size_and_hash(path: &Path) -> Result<(u64, String), IndexError> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

fn parse_manifest(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn field<'a>(m: &HashMap<&str, &'a str>, key: &str) -> Result<&'a str, IndexError> {
    m.get(key)
        .copied()
        .ok_or_else(|| IndexError::Damaged(format!("manifest lacks {key}")))
}

fn number<T: std::str::FromStr>(m: &HashMap<&str, &str>, key: &str) -> Result<T, IndexError> {
    field(m, key)?
        .parse()
        .map_err(|_| IndexError::Damaged(format!("manifest field {key} is not a number")))
}

impl VectorIndex {
    /// Writes a plaintext snapshot into `dir` (created if missing), covering every id
    /// `<= last_id`.
    pub fn save(&self, dir: &Path, last_id: u64) -> Result<SnapshotInfo, IndexError> {
        self.save_sealed(dir, last_id, &Keyring::none())
    }

    /// Dumps the graph as `<dir>/<wanted>.hnsw.{graph,data}`; returns the basename and count.
    fn dump(&self, dir: &Path, wanted: &str) -> Result<(String, usize), IndexError> {
        let _gate = self.insert_gate.write();
        // hnsw_rs panics (panic_any) when it cannot create the files.
        let dumped = catch_unwind(AssertUnwindSafe(|| self.hnsw.file_dump(dir, wanted)))
            .map_err(|p| IndexError::Hnsw(panic_message(p.as_ref())))?
            .map_err(|e| IndexError::Hnsw(e.to_string()))?;
        Ok((dumped, self.len()))
    }

    /// Writes a snapshot into `dir` (created if missing), covering every id `<= last_id`,
    /// sealed with `keyring`'s current key when it has one.
    ///
    /// Holds back inserts (not searches) while hnsw_rs dumps the graph.
    pub fn save_sealed(
        &self,
        dir: &Path,
        last_id: u64,
        keyring: &Keyring,
    ) -> Result<SnapshotInfo, IndexError> {
        fs::create_dir_all(dir)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let wanted = format!("snap-{last_id}-{stamp}");

        let (basename, count) = match keyring.current_id() {
            None => self.dump(dir, &wanted)?,
            Some(_) => {
                let scratch = Scratch::new(dir, &wanted)?;
                let (dumped, count) = self.dump(&scratch.dir, &wanted)?;
                if dumped != wanted {
                    // hnsw_rs renamed the dump to avoid existing files: it did not write into
                    // the scratch files, so there is nothing sealed to commit.
                    return Err(IndexError::Hnsw(format!(
                        "hnsw_rs dumped under {dumped}, not {wanted}"
                    )));
                }
                for kind in KINDS {
                    let plain = fs::read(scratch.file(kind))?;
                    let sealed = keyring
                        .seal(&snapshot_aad(kind, &wanted), &plain)
                        .map_err(|e| IndexError::Hnsw(format!("sealing the {kind} file: {e}")))?;
                    let mut file = File::create(dir.join(format!("{wanted}.hnsw.{kind}")))?;
                    file.write_all(&sealed)?;
                }
                (wanted.clone(), count)
            }
        };

        let graph = dir.join(format!("{basename}.hnsw.graph"));
        let data = dir.join(format!("{basename}.hnsw.data"));
        File::open(&graph)?.sync_all()?;
        File::open(&data)?.sync_all()?;
        let (graph_bytes, graph_hash) = size_and_hash(&graph)?;
        let (data_bytes, data_hash) = size_and_hash(&data)?;

        let manifest = format!(
            "version={FORMAT_VERSION}\nbasename={basename}\nlast_id={last_id}\ncount={count}\n\
             dims={DIMS}\nmax_nb_connection={}\nef_construction={}\n\
             graph_bytes={graph_bytes}\ngraph_blake3={graph_hash}\n\
             data_bytes={data_bytes}\ndata_blake3={data_hash}\n",
            self.params.max_nb_connection, self.params.ef_construction,
        );
        let manifest = match keyring.current_id() {
            Some(id) => format!("{manifest}encrypted={id}\n"),
            None => manifest,
        };
        let tmp = dir.join(MANIFEST_TMP);
        {
            let mut file = File::create(&tmp)?;
            file.write_all(manifest.as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&tmp, dir.join(MANIFEST))?;
        sync_dir(dir)?;

        // The new snapshot is committed: older dumps are garbage. Failing to remove one only
        // wastes disk space.
        for entry in fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap-") && !name.starts_with(&format!("{basename}.")) {
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::warn!(file = %name, error = %e, "could not remove old index snapshot");
                }
            }
        }
        Ok(SnapshotInfo {
            last_id,
            count,
            bytes: graph_bytes + data_bytes,
        })
    }

    /// Loads a plaintext snapshot; see [`VectorIndex::load_sealed`].
    pub fn load(dir: &Path) -> Result<Option<(VectorIndex, u64)>, IndexError> {
        Self::load_sealed(dir, &Keyring::none())
    }

    /// Loads the snapshot in `dir`: `Ok(None)` when there is none, `Err` when it is damaged or
    /// sealed under a key `keyring` lacks (rebuild from the store in both cases), else the index
    /// and the last entry id it covers. Plaintext snapshots load whatever the keyring.
    pub fn load_sealed(
        dir: &Path,
        keyring: &Keyring,
    ) -> Result<Option<(VectorIndex, u64)>, IndexError> {
        let text = match fs::read_to_string(dir.join(MANIFEST)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let m = parse_manifest(&text);
        if field(&m, "version")? != FORMAT_VERSION {
            return Err(IndexError::Damaged(
                "unknown snapshot format version".into(),
            ));
        }
        if number::<usize>(&m, "dims")? != DIMS {
            return Err(IndexError::Damaged("snapshot has other dimensions".into()));
        }
        let basename = field(&m, "basename")?;
        if basename.contains(['/', '\\']) || basename.starts_with('.') {
            return Err(IndexError::Damaged("bad basename in manifest".into()));
        }
        let last_id: u64 = number(&m, "last_id")?;
        let count: usize = number(&m, "count")?;
        for kind in ["graph", "data"] {
            let path = dir.join(format!("{basename}.hnsw.{kind}"));
            let (size, hash) = match size_and_hash(&path) {
                Ok(found) => found,
                Err(e) => return Err(IndexError::Damaged(format!("{kind} file: {e}"))),
            };
            if size != number::<u64>(&m, &format!("{kind}_bytes"))?
                || hash != field(&m, &format!("{kind}_blake3"))?
            {
                return Err(IndexError::Damaged(format!(
                    "{kind} file does not match manifest"
                )));
            }
        }

        // Sealed files are opened into the scratch directory's memfds; hnsw_rs reads from there.
        let scratch = match m.get("encrypted") {
            None => None,
            Some(_) => {
                let scratch = Scratch::new(dir, basename)?;
                for kind in KINDS {
                    let stored = fs::read(dir.join(format!("{basename}.hnsw.{kind}")))?;
                    if matches!(crypto::sealed_key_id(&stored), Ok(None)) {
                        return Err(IndexError::Damaged(format!(
                            "manifest says encrypted, the {kind} file is not"
                        )));
                    }
                    let plain = keyring
                        .open(&snapshot_aad(kind, basename), &stored)
                        .map_err(|e| IndexError::Damaged(format!("{kind} file: {e}")))?;
                    fs::write(scratch.file(kind), &plain)?;
                }
                Some(scratch)
            }
        };
        let from = scratch.as_ref().map_or(dir, |s| s.dir.as_path());

        // `load_hnsw_with_dist` ties the graph's lifetime to a borrow of the loader, because
        // with mmap the points can live in the loader's mapping. It never maps, so the graph
        // owns its data and the loader holds only a path and options: leaking it (a few
        // hundred bytes, once per start-up or reload) gives the `'static` borrow that lets the
        // index be stored and shared without a self-referential struct. (`load_hnsw` would also
        // mark the graph as mmap-backed, which makes later dumps pick a new file name instead
        // of the one asked for.)
        let loader: &'static HnswIo = Box::leak(Box::new(HnswIo::new(from, basename)));
        let hnsw = catch_unwind(AssertUnwindSafe(move || {
            loader.load_hnsw_with_dist::<f32, CosineDistance>(CosineDistance)
        }))
        .map_err(|p| {
            IndexError::Damaged(format!("loader panicked: {}", panic_message(p.as_ref())))
        })?
        .map_err(|e| IndexError::Damaged(e.to_string()))?;
        drop(scratch);
        if hnsw.get_nb_point() != count {
            return Err(IndexError::Damaged(format!(
                "manifest says {count} points, graph has {}",
                hnsw.get_nb_point()
            )));
        }
        let params = IndexParams {
            max_nb_connection: hnsw.get_max_nb_connection() as usize,
            ef_construction: hnsw.get_ef_construction(),
            capacity_hint: count,
            // Not in the dump: inserts after a load link as a fresh index would.
            keep_pruned: IndexParams::default().keep_pruned,
        };
        Ok(Some((VectorIndex::from_hnsw(hnsw, params), last_id)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::unit_vectors;
    use super::super::DEFAULT_EF_SEARCH;
    use super::*;

    fn built(n: usize) -> (VectorIndex, Vec<Vec<f32>>) {
        let vs = unit_vectors(n, 11);
        let params = IndexParams {
            capacity_hint: n,
            ..IndexParams::default()
        };
        let index =
            VectorIndex::rebuild(params, vs.iter().cloned().zip(0u64..).map(|(v, i)| (i, v)));
        (index, vs)
    }

    #[test]
    fn save_then_load_gives_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (index, vs) = built(1000);
        let info = index.save(dir.path(), 999).unwrap();
        assert_eq!(info.count, 1000);
        // A second save replaces the first and removes its files.
        index.save(dir.path(), 999).unwrap();
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "MANIFEST + graph + data");

        let (loaded, last_id) = VectorIndex::load(dir.path()).unwrap().unwrap();
        assert_eq!(last_id, 999);
        assert_eq!(loaded.len(), 1000);
        assert_eq!(
            loaded.params().max_nb_connection,
            index.params().max_nb_connection
        );
        for v in vs.iter().step_by(50) {
            assert_eq!(
                loaded.search(v, 3, DEFAULT_EF_SEARCH, |_| true),
                index.search(v, 3, DEFAULT_EF_SEARCH, |_| true)
            );
        }
        // The loaded index takes inserts and can be saved again.
        loaded.insert(5000, &vs[0]).unwrap();
        loaded.save(dir.path(), 5000).unwrap();
        let (again, last_id) = VectorIndex::load(dir.path()).unwrap().unwrap();
        assert_eq!((again.len(), last_id), (1001, 5000));
    }

    #[test]
    fn sealed_snapshots_round_trip_and_need_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (index, vs) = built(300);
        let key = |n: u8| crate::crypto::Key::from_bytes(&[n; 32]).unwrap();
        let keys = Keyring::new(key(1), vec![]);
        index.save_sealed(dir.path(), 299, &keys).unwrap();
        let text = fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let m = parse_manifest(&text);
        assert_eq!(m["encrypted"], keys.current_id().unwrap().to_string());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "no scratch directory left: {names:?}");
        for kind in KINDS {
            let bytes =
                fs::read(dir.path().join(format!("{}.hnsw.{kind}", m["basename"]))).unwrap();
            assert!(bytes.starts_with(&crypto::MAGIC));
        }
        // The vectors' bytes are not in the data file.
        let data = fs::read(dir.path().join(format!("{}.hnsw.data", m["basename"]))).unwrap();
        let needle: Vec<u8> = vs[7][..4].iter().flat_map(|f| f.to_ne_bytes()).collect();
        assert!(!data.windows(needle.len()).any(|w| w == needle));

        let (loaded, last) = VectorIndex::load_sealed(dir.path(), &keys)
            .unwrap()
            .unwrap();
        assert_eq!((loaded.len(), last), (300, 299));
        assert_eq!(
            loaded.search(&vs[3], 3, DEFAULT_EF_SEARCH, |_| true),
            index.search(&vs[3], 3, DEFAULT_EF_SEARCH, |_| true)
        );
        // A loaded index saves again under the name asked for (not an mmap-safe renamed one).
        loaded.save_sealed(dir.path(), 300, &keys).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        // Without the key, or with another one: an error (the caller rebuilds), not a panic.
        assert!(matches!(
            VectorIndex::load(dir.path()),
            Err(IndexError::Damaged(_))
        ));
        let other = Keyring::new(key(2), vec![]);
        assert!(VectorIndex::load_sealed(dir.path(), &other).is_err());
        let rotated = Keyring::new(key(2), vec![key(1)]);
        assert!(VectorIndex::load_sealed(dir.path(), &rotated)
            .unwrap()
            .is_some());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn missing_snapshot_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(VectorIndex::load(dir.path()).unwrap().is_none());
        assert!(VectorIndex::load(&dir.path().join("nope"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn damaged_snapshots_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = built(300);
        index.save(dir.path(), 1).unwrap();
        let manifest = fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let basename = parse_manifest(&manifest)["basename"].to_string();
        let graph = dir.path().join(format!("{basename}.hnsw.graph"));
        let original = fs::read(&graph).unwrap();

        // Flipped byte, truncated file, missing file, garbage manifest.
        let mut flipped = original.clone();
        flipped[original.len() / 2] ^= 0xff;
        fs::write(&graph, &flipped).unwrap();
        assert!(matches!(
            VectorIndex::load(dir.path()),
            Err(IndexError::Damaged(_))
        ));
        fs::write(&graph, &original[..original.len() / 3]).unwrap();
        assert!(matches!(
            VectorIndex::load(dir.path()),
            Err(IndexError::Damaged(_))
        ));
        fs::remove_file(&graph).unwrap();
        assert!(matches!(
            VectorIndex::load(dir.path()),
            Err(IndexError::Damaged(_))
        ));
        fs::write(dir.path().join(MANIFEST), "garbage").unwrap();
        assert!(matches!(
            VectorIndex::load(dir.path()),
            Err(IndexError::Damaged(_))
        ));
    }

    #[test]
    fn garbage_that_matches_its_manifest_does_not_panic() {
        // Files whose hashes match the manifest but whose content is garbage reach the hnsw_rs
        // loader itself: it must fail with an error, not take the process down.
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = built(300);
        index.save(dir.path(), 1).unwrap();
        let text = fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let m = parse_manifest(&text);
        let graph = dir.path().join(format!("{}.hnsw.graph", m["basename"]));
        let mut bytes = fs::read(&graph).unwrap();
        let len = bytes.len();
        bytes[len / 2..].iter_mut().for_each(|b| *b = 0xab);
        fs::write(&graph, &bytes).unwrap();
        let (size, hash) = size_and_hash(&graph).unwrap();
        let patched = text.replace(m["graph_blake3"], &hash).replace(
            &format!("graph_bytes={}", m["graph_bytes"]),
            &format!("graph_bytes={size}"),
        );
        fs::write(dir.path().join(MANIFEST), patched).unwrap();
        assert!(VectorIndex::load(dir.path()).is_err());
    }
}
