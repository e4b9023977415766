//! The SQLite WAL's checkpoints, mostly on a thread of their own.
//!
//! By SQLite's default the commit that takes the WAL to 1,000 pages copies it into the
//! database file and syncs both before it returns. With history on that commit is the
//! writer's (docs/protocol.md §10.1): at 2,000 msgs/s about every 200 sends, and every
//! send in it or queued behind it waited for the copy and two more syncs (9 ms on
//! average on the bench's disk, up to 56 ms: 12 % of the writer's time). Here this
//! thread checkpoints passively (commits go on meanwhile) after the commits it is told
//! of, at most every [`EVERY`] and at least every [`AT_LEAST`]. A commit still
//! checkpoints at [`PAGES`]: the WAL starts over only at a commit that finds it all
//! copied, which under steady commits this thread seldom leaves behind; that commit
//! copies what came since this thread's last pass, and then the WAL starts over.
//! Durability is unchanged: every commit is synced to the WAL as before, and a
//! checkpoint moves only synced pages.

use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use store::Store;

/// WAL pages at which a commit checkpoints (SQLite's `wal_autocheckpoint`): eight
/// times SQLite's default, so a WAL of up to 32 MiB of 4 KiB pages.
pub const PAGES: u32 = 8192;
/// Least time between two checkpoints here: each syncs the database file, and the
/// disk is the writer's first.
const EVERY: Duration = Duration::from_millis(100);
/// Longest time between two checkpoints, for commits nobody told of.
const AT_LEAST: Duration = Duration::from_secs(1);

/// Tells the checkpoint thread of commits; it ends when this is dropped.
pub struct Checkpoints {
    poke: Sender<()>,
}

impl Checkpoints {
    /// Starts the thread on `store`, a connection of its own.
    pub fn start(store: Store) -> Result<Checkpoints, crate::Error> {
        let (poke, rx) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("imd-checkpoint".into())
            .spawn(move || run(&store, &rx))
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?;
        Ok(Checkpoints { poke })
    }

    /// Something was committed: a checkpoint soon. Never blocks.
    pub fn committed(&self) {
        // Full: one is due already. Disconnected: the thread is gone with the daemon.
        let _ = self.poke.try_send(());
    }
}

fn run(store: &Store, rx: &Receiver<()>) {
    loop {
        match rx.recv_timeout(AT_LEAST) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = store.checkpoint() {
            log::warn!("store: checkpoint: {e}");
        }
        // Commits meanwhile wait for the next one, in the channel's one slot.
        thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use store::{NewUser, StoreOptions};

    use super::*;

    #[test]
    fn commits_are_copied_into_the_database_file_by_the_thread() {
        let dir = std::env::temp_dir().join(format!("imd-checkpoints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("imd.sqlite3");
        // No commit checkpoints by itself: only the thread copies the WAL.
        let opts = StoreOptions { checkpoint_pages: 0, ..StoreOptions::default() };
        let mut writer = Store::open(&path, &opts).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        for i in 0..300 {
            let id = format!("{i:032x}");
            let user = NewUser {
                id: id.clone(),
                account: id,
                name: "x".repeat(500),
                ..NewUser::default()
            };
            writer.create_user(&user).unwrap();
        }
        assert_eq!(size(), before, "the commits are in the WAL alone");
        let checkpoints = Checkpoints::start(Store::open(&path, &opts).unwrap()).unwrap();
        checkpoints.committed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while size() == before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(size() > before, "the thread copied the WAL into the database file");
        drop((checkpoints, writer));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
