//! nixrun-oci: the OCI runtime front end (runc's command line) over nixrun's
//! core; see src/oci/ and docs/oci.md.
#![no_main]

nixrun::entry_point!(nixrun::oci::main);
