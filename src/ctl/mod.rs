//! nixrunctl: find, enter and manage running machines (machinectl's job,
//! without needing systemd-machined), from the runtime state the supervisors
//! publish (state.rs).

pub mod cli;
