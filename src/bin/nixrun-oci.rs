//! nixrun-oci: the OCI runtime front end (runc's command line) over nixrun's
//! core; see src/oci/ and docs/oci.md.
fn main() -> std::process::ExitCode {
    nixrun::oci::main()
}
