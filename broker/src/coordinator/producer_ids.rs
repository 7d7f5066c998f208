//! Producer id allocation for InitProducerId. Ids are handed out from
//! blocks whose end is persisted before any id in them is used, so an id is
//! never given twice, even across crashes (some are skipped instead).

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::storage::checkpoint::write_atomic;

const BLOCK: i64 = 1000;

#[derive(Debug)]
struct Next {
    next: i64,
    limit: i64,
}

#[derive(Debug)]
pub struct ProducerIdManager {
    path: PathBuf,
    state: Mutex<Next>,
}

impl ProducerIdManager {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("meta").join("producer-id-block");
        let limit = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().parse::<i64>().map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(ProducerIdManager {
            path,
            state: Mutex::new(Next { next: limit, limit }),
        })
    }

    /// The next unused producer id.
    pub fn next_id(&self) -> Result<i64> {
        let mut s = self.state.lock();
        if s.next >= s.limit {
            let limit = s.limit + BLOCK;
            write_atomic(&self.path, format!("{limit}\n").as_bytes())?;
            s.limit = limit;
        }
        let id = s.next;
        s.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("meta")).expect("mkdir");
        let m = ProducerIdManager::open(dir.path()).expect("open");
        assert_eq!(m.next_id().expect("id"), 0);
        assert_eq!(m.next_id().expect("id"), 1);
        drop(m);
        let m = ProducerIdManager::open(dir.path()).expect("reopen");
        assert_eq!(m.next_id().expect("id"), BLOCK);
    }
}
