//! nixrun: boot a whole OS (or run one command) in a container, the job
//! systemd-nspawn does behind NixOS's container@.service.
//!
//! One core, several front ends. The layers, from the outside in:
//!
//! - front ends turn what a caller says into a `plan::Plan`: `nspawn` (nspawn's
//!   command line, the `nixrun` binary) today;
//! - `policy` computes from the plan what the container gets — capabilities,
//!   system call filters, device rules, environment, mount table — as data;
//! - `supervisor` runs the container on the host (cgroups in `cgroup`, the
//!   event loop, the lifecycle state machine, teardown) and talks to
//! - `container`, the cloned child, which applies the policy and execs init,
//!   over `protocol`, the typed channel with its numbered sync points;
//! - `sys` holds every `unsafe` system call wrapper.
//!
//! docs/ARCHITECTURE.md tells the life of one start through these layers.

pub mod cgroup;
pub mod container;
pub mod ctl;
pub mod dbus;
pub mod net;
pub mod nspawn;
pub mod oci;
pub mod phase;
pub mod plan;
pub mod policy;
pub mod protocol;
pub mod signal;
pub mod state;
pub mod supervisor;
pub mod sys;
