//! `bakkal script check FILE…`: scripts validated offline, as the server would, with
//! `file:line:col: message` for each problem and a non-zero exit on any.

use std::process::Command;

fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bakkal"))
        .arg("script")
        .arg("check")
        .args(args)
        .output()
        .expect("run bakkal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_examples_pass_and_a_broken_script_names_its_line() {
    let examples: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(examples.len() >= 5);
    let args: Vec<&str> = examples.iter().map(String::as_str).collect();
    let (ok, out) = check(&args);
    assert!(ok, "the examples in scripts/ fail: {out}");
    assert!(out.is_empty(), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rhai");
    std::fs::write(
        &bad,
        "// SEGMENT: broken\nfn matches(c) {\n    c.order_count >\n}\n",
    )
    .unwrap();
    let slow = dir.path().join("slow.rhai");
    std::fs::write(&slow, "fn matches(c) { sleep(3); true }\n").unwrap();
    let (ok, out) = check(&[bad.to_str().unwrap(), slow.to_str().unwrap()]);
    assert!(!ok, "broken scripts pass: {out}");
    let bad_name = bad.display().to_string();
    assert!(
        out.lines().any(|l| l.starts_with(&format!("{bad_name}:"))
            && l[bad_name.len() + 1..]
                .split(':')
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 3))),
        "{out}"
    );
    assert!(out.contains("sleep"), "{out}");
}
