//! Undo steps, run last-in first-out on every way out of a run or a boot.
//!
//! Each setup step that changes the host pushes its undo right after it
//! succeeded (cgroups today; links, firewall rules, registrations and lock files
//! as they come), so an error half-way undoes exactly what was done, in reverse
//! order. The list runs when asked, or when dropped (an early `?` return).

/// One undo step; an error is one line.
type Undo<'a> = Box<dyn FnOnce() -> Result<(), String> + 'a>;

/// The list of undo steps; borrows what the steps act on.
#[derive(Default)]
pub struct Teardown<'a> {
    steps: Vec<(&'static str, Undo<'a>)>,
}

impl<'a> Teardown<'a> {
    pub fn new() -> Teardown<'a> {
        Teardown::default()
    }

    /// Adds an undo step; `what` names it in warnings.
    pub fn push(&mut self, what: &'static str, undo: impl FnOnce() -> Result<(), String> + 'a) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Runs every step, newest first, even after one failed; returns the
    /// failures as lines.
    pub fn run(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                errors.push(format!("{what}: {e}"));
            }
        }
        errors
    }

    /// Drops the steps without running them: what they would undo now
    /// belongs to someone else (an OCI container created for a later
    /// `start`, which outlives the runtime process that set it up).
    pub fn keep(&mut self) {
        self.steps.clear();
    }

    /// Runs the steps and reports failures as warnings on stderr: by then the
    /// container is over, and a failed cleanup must not hide its exit status.
    pub fn finish(&mut self) {
        for e in self.run() {
            eprintln!("nixrun: warning: {e}");
        }
    }
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn steps_run_last_in_first_out_even_after_a_failure() {
        let log = RefCell::new(Vec::new());
        let mut t = Teardown::new();
        t.push("first", || {
            log.borrow_mut().push("first");
            Ok(())
        });
        t.push("second", || {
            log.borrow_mut().push("second");
            Err("busy".into())
        });
        t.push("third", || {
            log.borrow_mut().push("third");
            Ok(())
        });
        assert_eq!(t.run(), vec!["second: busy".to_string()]);
        assert_eq!(*log.borrow(), vec!["third", "second", "first"]);
        // Each step runs once.
        assert!(t.run().is_empty());
        assert_eq!(log.borrow().len(), 3);
    }

    #[test]
    fn dropping_runs_what_is_left() {
        let log = RefCell::new(Vec::new());
        {
            let mut t = Teardown::new();
            t.push("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            // An early return would drop it here.
        }
        assert_eq!(*log.borrow(), vec!["a"]);
    }
}
