//! `nixrun-gendoc OUTDIR`: writes nixrun's and nixrunctl's shell completions and
//! man pages below OUTDIR (layout: see the library). Used at install time only,
//! so it stays a plain argv reader without a clap parser of its own.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [outdir] = args.as_slice() else {
        eprintln!("usage: nixrun-gendoc OUTDIR");
        return ExitCode::from(2);
    };
    match nixrun_gendoc::generate_all(&PathBuf::from(outdir)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nixrun-gendoc: {e}");
            ExitCode::FAILURE
        }
    }
}
