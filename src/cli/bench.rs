//! `herald bench …`: runs the load generator, `herald-bench`, with the given arguments.
//! The load generator is its own crate and binary so the server carries none of its
//! dependencies; this subcommand only finds it (beside the running `herald`, then on
//! `PATH`) and hands over the arguments, stdio and exit code.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// File name of the load generator's binary.
pub const BENCH_BIN: &str = "herald-bench";

/// Where `herald bench` runs the load generator from: the directory of the running
/// `herald` first (a `cargo build --release --workspace` puts both in `target/release`),
/// then each directory of `path` (the `PATH` variable) in order. `is_file` decides what
/// exists, so the choice is testable without a filesystem.
pub fn locate(
    exe_dir: Option<&Path>,
    path: Option<&OsStr>,
    is_file: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let on_path = path.into_iter().flat_map(std::env::split_paths);
    exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join(BENCH_BIN))
        .find(|candidate| is_file(candidate))
}

/// Runs the load generator with `args`; its exit code is ours. Not finding it, or not
/// being able to start it, prints one line saying how to build it and exits 1.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    let path = std::env::var_os("PATH");
    let Some(bin) = locate(exe_dir, path.as_deref(), Path::is_file) else {
        eprintln!(
            "herald: bench: the load generator `{BENCH_BIN}` is neither beside this binary \
             ({}) nor on PATH; build it with `cargo build --release -p herald-bench`",
            exe_dir.map_or_else(|| "unknown directory".into(), |d| d.display().to_string())
        );
        return ExitCode::from(1);
    };
    match Command::new(&bin).args(args).status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!(
                    "herald: bench: {} ended by a signal ({status})",
                    bin.display()
                );
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("herald: bench: cannot run {}: {e}", bin.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_beside_herald_wins_over_path() {
        let path = std::env::join_paths(["/opt/a", "/opt/b"]).unwrap();
        let found = locate(Some(Path::new("/srv/herald")), Some(&path), |_| true);
        assert_eq!(found, Some(PathBuf::from("/srv/herald/herald-bench")));
    }

    #[test]
    fn path_is_searched_in_order_when_nothing_is_beside_herald() {
        let path = std::env::join_paths(["/opt/a", "/opt/b", "/opt/c"]).unwrap();
        let exists = |p: &Path| p.starts_with("/opt/b") || p.starts_with("/opt/c");
        let found = locate(Some(Path::new("/srv/herald")), Some(&path), exists);
        assert_eq!(found, Some(PathBuf::from("/opt/b/herald-bench")));
    }

    #[test]
    fn nothing_found_anywhere_is_none() {
        let path = std::env::join_paths(["/opt/a"]).unwrap();
        assert_eq!(
            locate(Some(Path::new("/srv")), Some(&path), |_| false),
            None
        );
        assert_eq!(locate(None, None, |_| true), None);
    }
}
