//! Input the command line must refuse, by name, instead of running on a wrong reading of it: a
//! `--memory-mib` whose byte count wraps to 0.
mod common;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = common::encore().args(args).output().expect("running encore");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_memory_cap_that_overflows_or_exceeds_the_machine_is_refused_naming_the_flag() {
    // 2^44 MiB is 2^64 bytes: it wrapped to a 0-byte cap.
    let (ok, _, err) = run(&["--memory-mib", "17592186044416", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib") && err.contains("does not fit in 64 bits"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "1099511627776", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib") && err.contains("more than this machine's"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "0", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "64", "plugin", "list"]);
    assert!(ok, "{err}");
}
