//! The `linkerd` command line's handling of bad input: one line on stderr
//! saying what is wrong, exit code 1, nothing on stdout.

use linkerd_tests::proxy::bin;

fn linkerd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(bin("linkerd"))
        .args(args)
        .env_remove("LINKERD_API_ADDR")
        // Never a developer's running demo.
        .env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json")
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
        (
            &["stat", "cronjobz"][..],
            "\"cronjobz\" is not a resource type stat knows",
        ),
        (
            &["stat", "deploy", "--to", "deploy/a", "--from", "deploy/b"][..],
            "cannot be used with",
        ),
        (
            &["stat", "deploy", "--api-addr", "127.0.0.1:1"][..],
            "cannot reach the public-api service at 127.0.0.1:1",
        ),
        (
            &["edges", "deploy/web"][..],
            "give edges a type (e.g. deploy), not a resource",
        ),
        (
            &[
                "diagnostics",
                "endpoints",
                "web",
                "--api-addr",
                "127.0.0.1:1",
            ][..],
            "cannot reach the destination service",
        ),
        (
            &["demo", "--failure-rate", "2", "--no-build"][..],
            "--failure-rate must be between 0 and 1",
        ),
        (
            &["demo", "--addr-base", "10.0.0.0", "--no-build"][..],
            "--addr-base must be in 127.0.0.0/8",
        ),
        (&["completion", "tcsh"][..], "invalid value 'tcsh'"),
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
    for cmd in ["tap", "stat", "edges", "demo", "diagnostics", "completion"] {
        assert!(stdout.contains(cmd), "{stdout}");
    }
    // Without a control plane, version says so and still succeeds.
    let (code, stdout, _) = linkerd(&["version", "--api-addr", "127.0.0.1:1"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        "Client version: 0.1.0\nServer version: unavailable\n"
    );
    // No demo and no cluster: say what was looked for and what to do.
    let home = std::env::temp_dir().join(format!("linkerd-cli-home-{}", std::process::id()));
    let no_cluster = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(bin("linkerd"));
        cmd.args(["stat", "deploy"])
            .env_remove("LINKERD_API_ADDR")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", &home)
            .env("LINKERD_DEMO_STATE", "/nonexistent/linkerd-demo.json");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = no_cluster(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let kube = home.join(".kube/config");
    for part in [
        format!(
            "no kubeconfig at {} ($KUBECONFIG is not set)",
            kube.display()
        ),
        "no `linkerd demo` is running (state file /nonexistent/linkerd-demo.json)".into(),
        "start the local mesh with `linkerd demo`, or name a cluster with --kubeconfig FILE".into(),
    ] {
        assert!(stderr.contains(&part), "{part:?} not in {stderr}");
    }
    let (_, stderr) = no_cluster(&[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    assert!(
        stderr.contains("$KUBECONFIG names /nonexistent/kubeconfig, which does not exist"),
        "{stderr}"
    );
    // A kubeconfig that does not parse: named once, its problem on one line.
    std::fs::create_dir_all(kube.parent().unwrap()).unwrap();
    std::fs::write(&kube, "garbage").unwrap();
    let (code, stderr) = no_cluster(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches(".kube/config").count(), 1, "{stderr}");
    assert!(stderr.contains("is not usable"), "{stderr}");
    let _ = std::fs::remove_dir_all(&home);

    let (code, stdout, _) = linkerd(&["completion", "bash"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("_linkerd()"), "{stdout}");
}
