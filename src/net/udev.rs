//! Whether udev is done with a host network interface, before nixrun moves it
//! into a container or puts a macvlan/ipvlan on it: where udevd runs, a link
//! it has not processed yet may still be renamed under us, so nspawn refuses
//! it ("not initialized yet"), and so do we. Where udevd does not run (CI, a
//! container, a minimal host) there is nothing to wait for: nspawn 252 asks
//! udev anyway and refuses every interface there; nixrun does not.
//!
//! Read straight from udev's run-time database rather than through libudev:
//! udevd is running if its control socket exists; it has processed link N
//! once `data/nN` exists; a rename in progress is the property ID_RENAMING.

use std::path::Path;

/// udev's run-time directory.
pub const RUN_UDEV: &str = "/run/udev";

#[derive(Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No udevd here: nothing to wait for.
    NoUdev,
    Initialized,
    NotInitialized,
    Renaming,
}

/// The state of the link with index `ifindex`, from udev's database under
/// `run_udev` (RUN_UDEV but in tests).
pub fn link_state(run_udev: &Path, ifindex: u32) -> LinkState {
    if !run_udev.join("control").exists() {
        return LinkState::NoUdev;
    }
    match std::fs::read_to_string(run_udev.join("data").join(format!("n{ifindex}"))) {
        Err(_) => LinkState::NotInitialized,
        Ok(db) if db.lines().any(|l| l == "E:ID_RENAMING=1") => LinkState::Renaming,
        Ok(_) => LinkState::Initialized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "nixrun-udev-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(d.join("data")).unwrap();
        Dir(d)
    }

    #[test]
    fn without_udevd_every_link_will_do() {
        let d = dir();
        assert_eq!(link_state(&d.0, 7), LinkState::NoUdev);
    }

    #[test]
    fn with_udevd_the_database_decides() {
        let d = dir();
        std::fs::write(d.0.join("control"), "").unwrap();
        assert_eq!(link_state(&d.0, 7), LinkState::NotInitialized);
        std::fs::write(d.0.join("data/n7"), "I:123\nE:ID_NET_NAME=eth1\n").unwrap();
        assert_eq!(link_state(&d.0, 7), LinkState::Initialized);
        std::fs::write(d.0.join("data/n7"), "I:123\nE:ID_RENAMING=1\n").unwrap();
        assert_eq!(link_state(&d.0, 7), LinkState::Renaming);
        assert_eq!(link_state(&d.0, 8), LinkState::NotInitialized);
    }
}
