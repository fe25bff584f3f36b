//! Shell completions and man pages for `nixrun` and `nixrunctl`, generated from
//! the same clap definitions the binaries parse with.
//!
//! Output layout below the directory given (what `make install` and the Nix
//! package copy from):
//!
//! ```text
//! bash/nixrun  bash/nixrunctl          (bash-completion looks files up by command name)
//! zsh/_nixrun  zsh/_nixrunctl          (compinit wants the leading underscore)
//! fish/nixrun.fish  fish/nixrunctl.fish
//! man1/nixrun.1  man1/nixrunctl.1  man1/nixrunctl-<verb>.1 ...
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// The documented commands, as the binaries parse them less their hidden
/// arguments: nixrun's are the nspawn flags it refuses ("not supported yet"),
/// which a completion should not offer.
pub fn commands() -> Vec<Command> {
    vec![
        without_hidden_args(nixrun::nspawn::cli::command()),
        without_hidden_args(nixrun::ctl::cli::command()),
    ]
}

/// clap_complete completes hidden arguments too and clap cannot remove an
/// argument from a command, so a command with hidden ones is rebuilt from its
/// visible parts (what the generators read: texts, version, arguments and
/// subcommands).
fn without_hidden_args(cmd: Command) -> Command {
    if !cmd.get_arguments().any(|a| a.is_hide_set()) {
        return cmd;
    }
    let mut out = Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(cmd.get_subcommands().cloned());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(t) = cmd.get_about() {
        out = out.about(t.clone());
    }
    if let Some(t) = cmd.get_long_about() {
        out = out.long_about(t.clone());
    }
    if let Some(t) = cmd.get_before_help() {
        out = out.before_help(t.clone());
    }
    if let Some(t) = cmd.get_after_help() {
        out = out.after_help(t.clone());
    }
    if let Some(t) = cmd.get_after_long_help() {
        out = out.after_long_help(t.clone());
    }
    out
}

pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The directory (below the output directory) and file name a shell expects a
/// command's completion under.
pub fn completion_path(shell: Shell, command: &str) -> PathBuf {
    match shell {
        Shell::Zsh => Path::new("zsh").join(format!("_{command}")),
        Shell::Fish => Path::new("fish").join(format!("{command}.fish")),
        _ => Path::new("bash").join(command),
    }
}

/// Writes every completion and man page below `outdir` and returns the files
/// written, in a stable order.
pub fn generate_all(outdir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        for shell in SHELLS {
            let path = outdir.join(completion_path(shell, &name));
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name.as_str(), &mut text);
            write(&path, &text)?;
            written.push(path);
        }
        // clap's implicit `help` verb is not a real command: no page for it.
        let mut cmd = cmd.disable_help_subcommand(true);
        // Building fills in the subcommands' display names (nixrunctl-list).
        cmd.build();
        man_pages(&cmd, &outdir.join("man1"), &mut written)?;
    }
    Ok(written)
}

/// One page for the command and one per visible subcommand, recursively.
fn man_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text)?;
    write(&path, &text)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, written)?;
    }
    Ok(())
}

fn write(path: &Path, text: &[u8]) -> io::Result<()> {
    let fail = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    fs::write(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory per test, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "nixrun-gendoc-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// roff escapes '-' as "\-"; the tests look for flags as users type them.
    fn read(path: &Path) -> String {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .replace("\\-", "-")
    }

    const NIXRUN_FLAGS: [&str; 5] = [
        "--directory",
        "--bind-ro",
        "--keep-unit",
        "--private-network",
        "--host-address",
    ];
    const NIXRUNCTL_VERBS: [&str; 4] = ["list", "exec", "shell", "stop"];

    #[test]
    fn writes_the_expected_files() {
        let out = TempDir::new();
        let written = generate_all(&out.0).unwrap();
        let rel: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(&out.0).unwrap().display().to_string())
            .collect();
        for f in [
            "bash/nixrun",
            "zsh/_nixrun",
            "fish/nixrun.fish",
            "man1/nixrun.1",
            "bash/nixrunctl",
            "zsh/_nixrunctl",
            "fish/nixrunctl.fish",
            "man1/nixrunctl.1",
            "man1/nixrunctl-list.1",
            "man1/nixrunctl-exec.1",
            "man1/nixrunctl-shell.1",
            "man1/nixrunctl-stop.1",
            "man1/nixrunctl-reload.1",
        ] {
            assert!(rel.iter().any(|r| r == f), "{f} not written; got {rel:?}");
        }
        assert!(
            !rel.iter().any(|r| r.contains("help")),
            "a page or completion for clap's help verb: {rel:?}"
        );
        for p in &written {
            assert!(
                fs::metadata(p).unwrap().len() > 0,
                "{} is empty",
                p.display()
            );
        }
    }

    #[test]
    fn nixrun_outputs_mention_its_key_flags() {
        let out = TempDir::new();
        generate_all(&out.0).unwrap();
        for f in [
            "bash/nixrun",
            "zsh/_nixrun",
            "fish/nixrun.fish",
            "man1/nixrun.1",
        ] {
            let text = read(&out.0.join(f));
            for flag in NIXRUN_FLAGS {
                // fish spells long options without the dashes: -l directory
                let fish = format!("-l {}", &flag[2..]);
                assert!(
                    text.contains(flag) || text.contains(&fish),
                    "{f} lacks {flag}"
                );
            }
        }
    }

    #[test]
    fn refused_nspawn_flags_are_not_offered() {
        let out = TempDir::new();
        generate_all(&out.0).unwrap();
        for f in [
            "bash/nixrun",
            "zsh/_nixrun",
            "fish/nixrun.fish",
            "man1/nixrun.1",
        ] {
            let text = read(&out.0.join(f));
            for flag in ["template", "personality"] {
                assert!(!text.contains(flag), "{f} offers --{flag}");
            }
            // Implemented flags are offered.
            for flag in [
                "private-users",
                "ephemeral",
                "volatile",
                "overlay-ro",
                "inaccessible",
            ] {
                assert!(text.contains(flag), "{f} lacks --{flag}");
            }
        }
    }

    #[test]
    fn nixrunctl_outputs_mention_its_verbs() {
        let out = TempDir::new();
        generate_all(&out.0).unwrap();
        for f in [
            "bash/nixrunctl",
            "zsh/_nixrunctl",
            "fish/nixrunctl.fish",
            "man1/nixrunctl.1",
        ] {
            let text = read(&out.0.join(f));
            for verb in NIXRUNCTL_VERBS {
                assert!(text.contains(verb), "{f} lacks {verb}");
            }
        }
        let exec = read(&out.0.join("man1/nixrunctl-exec.1"));
        assert!(exec.contains("nixrunctl-exec"), "{exec}");
    }

    #[test]
    fn generation_is_reproducible() {
        let (a, b) = (TempDir::new(), TempDir::new());
        let wa = generate_all(&a.0).unwrap();
        let wb = generate_all(&b.0).unwrap();
        assert_eq!(wa.len(), wb.len());
        for (pa, pb) in wa.iter().zip(&wb) {
            assert_eq!(
                fs::read(pa).unwrap(),
                fs::read(pb).unwrap(),
                "{}",
                pa.display()
            );
        }
    }
}
