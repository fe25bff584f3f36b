//! nixrunctl: the control front end over nixrun's runtime state (src/ctl/).
#![no_main]

nixrun::entry_point!(run);

fn run() -> u8 {
    // Fds leaked by our caller would reach into the machine with the process
    // that enters it; nothing of ours is open yet.
    let _ = nixrun::sys::fd::close_from(3);
    nixrun::ctl::main()
}
