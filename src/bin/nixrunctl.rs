//! nixrunctl: the control front end over nixrun's runtime state.
fn main() {
    let _ = nixrun::ctl::cli::command().get_matches();
    eprintln!("nixrunctl: not implemented yet");
    std::process::exit(1);
}
