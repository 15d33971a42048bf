//! The `linkerd` command line's handling of bad input: one line on stderr
//! saying what is wrong, exit code 1, nothing on stdout.

use linkerd_tests::proxy::bin;

fn linkerd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(bin("linkerd"))
        .args(args)
        .env_remove("LINKERD_API_ADDR")
        .output()
        .expect("run linkerd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_is_one_line_and_exit_code_one() {
    for (args, expected) in [
        (
            &["tap"][..],
            "required arguments were not provided: <RESOURCE>",
        ),
        (
            &["tap", "svc/web"][..],
            "\"svc\" is not a resource type tap knows",
        ),
        (
            &["tap", "deploy/web", "--max-rps", "0"][..],
            "--max-rps must be above 0",
        ),
        (
            &["tap", "deploy/web", "-o", "yaml"][..],
            "invalid value 'yaml'",
        ),
        (
            &["tap", "deploy/web", "--api-addr", "127.0.0.1:1"][..],
            "cannot reach the tap service at 127.0.0.1:1",
        ),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
    ] {
        let (code, stdout, stderr) = linkerd(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("linkerd: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = linkerd(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("tap"));
}
