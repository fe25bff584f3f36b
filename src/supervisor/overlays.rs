//! The work directories of --overlay= mounts whose upper layer is a host
//! directory: overlayfs wants one, empty, on the upper layer's mount. Made for
//! the run next to the upper directory (policy::mounts::overlay_workdir),
//! removed at its end. Each is first noted in a journal
//! (`/run/nixrun/overlay/NAME`), so that the next start of the machine removes
//! what a SIGKILLed supervisor left.

use super::teardown::Teardown;
use super::SupervisorError;
use crate::plan::Plan;
use crate::policy::mounts::overlay_workdir;
use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const JOURNAL_DIR: &str = "/run/nixrun/overlay";

/// Removes what a previous run of the machine noted and did not remove (this
/// run holds the machine's lock, so that run is over), then makes this run's
/// work directories.
pub fn prepare<'a>(plan: &Plan, undo: &mut Teardown<'a>) -> Result<(), SupervisorError> {
    let journal = Path::new(JOURNAL_DIR).join(&plan.machine);
    if let Ok(text) = fs::read_to_string(&journal) {
        for line in text.lines().filter(|l| l.starts_with('/')) {
            let _ = fs::remove_dir_all(line);
        }
        let _ = fs::remove_file(&journal);
    }
    let dirs: Vec<PathBuf> = plan
        .overlays
        .iter()
        .filter(|o| !o.readonly)
        .filter_map(|o| o.upper.as_deref())
        .map(|u| overlay_workdir(u, &plan.machine))
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        SupervisorError::Failed(format!("--overlay: {what} {}: {e}", p.display()))
    };
    fs::create_dir_all(JOURNAL_DIR).map_err(|e| fail("creating", Path::new(JOURNAL_DIR), e))?;
    undo.push("removing the overlay journal", {
        let journal = journal.clone();
        move || {
            let _ = fs::remove_file(journal);
            Ok(())
        }
    });
    for dir in dirs {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal)
            .map_err(|e| fail("writing", &journal, e))?;
        writeln!(f, "{}", dir.display()).map_err(|e| fail("writing", &journal, e))?;
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            // Another overlay of this run with the same upper directory;
            // overlayfs refuses the second mount itself.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail("creating the work directory", &dir, e)),
        }
        undo.push("removing an overlay's work directory", move || {
            fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
        });
    }
    Ok(())
}
