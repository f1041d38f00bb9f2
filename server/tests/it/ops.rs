//! The deployment files in `ops/`. No container engine runs on these machines, so the
//! container build file and the compose file are parsed and checked against the project
//! (stages, user, paths, settings), not run; the systemd units pass `systemd-analyze verify`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn ops(name: &str) -> String {
    std::fs::read_to_string(root().join("ops").join(name)).unwrap_or_else(|e| panic!("ops/{name}: {e}"))
}

/// Every `OPENGUILD_*` variable the binary knows: `openguild config env`, and the ones
/// that are not settings of the file.
fn known_variables() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_openguild")).args(["config", "env"]).output().unwrap();
    assert!(out.status.success());
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(|n| n.trim().to_owned())
        .collect();
    names.extend(
        ["OPENGUILD_CONFIG", "OPENGUILD_LOG", "OPENGUILD_REDIS_URL", "OPENGUILD_BACKUP_PASSPHRASE"].map(String::from),
    );
    names
}

fn is_known(var: &str, known: &[String]) -> bool {
    known.iter().any(|k| match k.strip_suffix("<NAME>") {
        // A map's entries: OPENGUILD_API__OIDC__<NAME>=… stands for any name and field.
        Some(prefix) => var.starts_with(prefix),
        None => k == var,
    })
}

/// The instructions of a container build file, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_container_build_is_multi_stage_small_non_root_and_names_what_exists() {
    let steps = instructions(&ops("Containerfile"));
    let stages: Vec<(usize, String)> =
        steps.iter().enumerate().filter(|(_, (op, _))| op == "FROM").map(|(i, (_, args))| (i, args.clone())).collect();
    assert!(stages.len() >= 3, "the client, the server and the image that runs: {stages:?}");
    let names: BTreeSet<String> =
        stages.iter().filter_map(|(_, a)| a.split_once(" AS ").map(|(_, n)| n.trim().to_owned())).collect();
    let (last_at, last_base) = stages.last().unwrap().clone();
    assert!(last_base.contains("slim") || last_base.contains("distroless"), "a small final image: {last_base}");
    let last: Vec<&(String, String)> = steps[last_at..].iter().collect();

    // The final stage runs as a user that is not root, and runs openguild.
    let user = last.iter().rev().find(|(op, _)| op == "USER").map(|(_, a)| a.clone()).expect("a USER");
    assert!(!["root", "0", "0:0"].contains(&user.as_str()), "USER {user}");
    let entry = last.iter().find(|(op, _)| op == "ENTRYPOINT").map(|(_, a)| a.clone()).expect("an ENTRYPOINT");
    assert!(entry.contains("openguild"), "{entry}");
    let cmd = last.iter().find(|(op, _)| op == "CMD").map(|(_, a)| a.clone()).expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(&cmd).expect("CMD in exec form");
    assert_eq!(cmd[0], "serve");

    // It copies the binary and the built web client from earlier stages, and nothing else in.
    let from_stages: Vec<&String> = last.iter().filter(|(op, _)| op == "COPY").map(|(_, a)| a).collect();
    for copy in &from_stages {
        let stage = copy.strip_prefix("--from=").and_then(|r| r.split_whitespace().next()).expect("COPY --from");
        assert!(names.contains(stage), "COPY --from={stage}: no such stage in {names:?}");
    }
    assert!(from_stages.iter().any(|c| c.contains("openguild")), "{from_stages:?}");
    assert!(from_stages.iter().any(|c| c.contains("ui/dist")), "the web client: {from_stages:?}");

    // Every file an earlier stage copies from the build context exists.
    for (op, args) in &steps {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().filter(|p| !p.starts_with("--")).collect();
        for source in &parts[..parts.len() - 1] {
            assert!(root().join(source).exists(), "COPY {source}: not in the repository");
        }
    }
    // The settings it sets are settings.
    let known = known_variables();
    for (op, args) in &steps {
        if op == "ENV" {
            for var in args.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, _)| k) {
                assert!(is_known(var, &known), "ENV {var} is no setting");
            }
        }
    }
}

#[test]
fn the_compose_file_runs_a_whole_hub_with_known_settings_and_files_that_exist() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &root().join("ops/compose.yaml").display().to_string(),
        ])
        .output()
        .expect("python3 (with PyYAML: scripts/ensure-services installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compose: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = compose["services"].as_object().expect("services");
    for wanted in ["openguild", "postgres", "redis", "livekit", "dex", "caddy"] {
        assert!(services.contains_key(wanted), "no {wanted} service");
    }
    let hub = &services["openguild"];
    let context = root().join("ops").join(hub["build"]["context"].as_str().unwrap());
    assert!(context.join(hub["build"]["dockerfile"].as_str().unwrap()).exists(), "{}", hub["build"]);

    // Every ${VAR} is in the example env file, and openguild takes the settings as they
    // come out (it refuses an unknown OPENGUILD_* variable, naming it).
    let example = ops("hub.env.example");
    let defined: std::collections::BTreeMap<&str, &str> =
        example.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).collect();
    let mut env = Vec::new();
    for (var, value) in hub["environment"].as_object().unwrap() {
        let mut value = value.as_str().unwrap().to_owned();
        while let Some(at) = value.find("${") {
            let end = value[at..].find('}').unwrap() + at;
            let used = value[at + 2..end].to_owned();
            let with =
                defined.get(used.as_str()).unwrap_or_else(|| panic!("${{{used}}} is not in ops/hub.env.example"));
            value.replace_range(at..=end, with);
        }
        env.push((var.clone(), value));
    }
    let data = tempfile::tempdir().unwrap();
    let shown = Command::new(env!("CARGO_BIN_EXE_openguild"))
        .args(["config", "show"])
        .env_clear()
        .env("OPENGUILD_DATA_DIR", data.path())
        .envs(env)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&shown.stdout), String::from_utf8_lossy(&shown.stderr));
    assert!(shown.status.success(), "openguild refuses the compose file's settings:\n{said}");
    assert!(said.contains("chat.example.org") && said.contains("postgres://openguild:"), "{said}");
    // The data lives in a volume at the image's data directory.
    let volumes: Vec<&str> = hub["volumes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(volumes.iter().any(|v| v.ends_with(":/var/lib/openguild")), "{volumes:?}");
    // Every file mounted from ops/ exists; the proxy serves TLS.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Some(path) = volume.strip_prefix("./") {
                let path = path.split(':').next().unwrap();
                assert!(root().join("ops").join(path).exists(), "{name} mounts ops/{path}, which does not exist");
            }
        }
    }
    let ports: Vec<&str> = services["caddy"]["ports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(ports.iter().any(|p| p.starts_with("443:443")), "{ports:?}");
}

#[test]
fn the_proxies_let_the_largest_upload_through_and_keep_metrics_inside() {
    let out = Command::new(env!("CARGO_BIN_EXE_openguild")).args(["config", "defaults"]).output().unwrap();
    let defaults = String::from_utf8(out.stdout).unwrap();
    let limit: u64 = defaults
        .lines()
        .find_map(|l| l.strip_prefix("max_upload_bytes = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("max_upload_bytes in the defaults");
    let megabytes = |text: &str, key: &str| -> u64 {
        let line = text.lines().find(|l| l.trim().starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
        let value = line.trim().trim_start_matches(key).trim().trim_end_matches(';').to_lowercase();
        value.trim_end_matches("mb").trim_end_matches('m').parse::<u64>().unwrap() * 1_000_000
    };
    assert!(megabytes(&ops("caddy/Caddyfile"), "max_size") >= limit, "Caddy's request_body max_size");
    assert!(megabytes(&ops("nginx/openguild.conf"), "client_max_body_size") >= limit, "nginx client_max_body_size");
    let nginx = ops("nginx/openguild.conf");
    assert!(nginx.contains("proxy_set_header Upgrade $http_upgrade"), "websocket upgrades pass nginx");
    // Metrics stay inside.
    assert!(nginx.contains("location = /metrics {\n        return 404;"), "nginx hides /metrics");
    assert!(ops("caddy/Caddyfile").contains("respond /metrics 404"), "Caddy hides /metrics");
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = ["openguild.service", "openguild-backup.service", "openguild-backup.timer"];
    for unit in units {
        // The binary where the unit expects it is this build's.
        let text = ops(&format!("systemd/{unit}")).replace("/usr/local/bin/openguild", env!("CARGO_BIN_EXE_openguild"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.map(|u| dir.path().join(u)))
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let service = ops("systemd/openguild.service");
    for hardening in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet="] {
        assert!(service.contains(hardening), "{hardening}");
    }
}
