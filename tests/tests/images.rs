//! `bin/images`: its one table of what goes in each image is what the
//! Dockerfiles say and what the chart expects (users, names).

use linkerd_tests::tools::repo;

#[test]
fn the_dockerfiles_are_the_tables() {
    let out = std::env::temp_dir().join(format!("linkerd-dockerfiles-{}", std::process::id()));
    let run = std::process::Command::new("bash")
        .arg(repo().join("bin/images"))
        .arg("--dockerfiles")
        .env("DOCKERFILES_OUT", &out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let names = [
        "proxy",
        "proxy-init",
        "controller",
        "web",
        "demo",
        "prometheus",
    ];
    for name in names {
        let file = format!("{name}.Dockerfile");
        let written = std::fs::read_to_string(out.join(&file)).unwrap();
        let committed = std::fs::read_to_string(repo().join("bin/docker").join(&file))
            .unwrap_or_else(|e| {
                panic!("bin/docker/{file}: {e} (bin/images --dockerfiles writes it)")
            });
        assert_eq!(
            written, committed,
            "bin/docker/{file} is not bin/images' table: run bin/images --dockerfiles"
        );
        // The chart's default image names, so `linkerd install` runs them.
        assert!(
            written.contains(&format!("ghcr.io/linkerd-rs/{name}:0.1.0")),
            "{written}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
    // The users the chart runs them as (proxy.uid, controllerUID).
    let values = std::fs::read_to_string(repo().join("charts/linkerd/values.yaml")).unwrap();
    assert!(values.contains("  uid: 2102\n") && values.contains("controllerUID: 2103\n"));
    let proxy = std::fs::read_to_string(repo().join("bin/docker/proxy.Dockerfile")).unwrap();
    assert!(proxy.contains("USER 2102:2102"), "{proxy}");
    let controller =
        std::fs::read_to_string(repo().join("bin/docker/controller.Dockerfile")).unwrap();
    assert!(controller.contains("USER 2103:2103"), "{controller}");
}
