//! `sluice check-config` and start-up with good and bad configs, as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::repo_root;
use std::process::Command;

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env_remove("OPENAI_API_KEY")
        .env_remove("SLUICE_MASTER_KEY");
    c
}

#[test]
fn litellm_config_is_accepted_with_warnings() {
    let out = sluice()
        .arg("check-config")
        .arg(repo_root().join("tests/fixtures/configs/litellm-proxy.yaml"))
        .env("OPENAI_API_KEY", "sk-a")
        .env("GROQ_API_KEY", "gk")
        .env("SLUICE_MASTER_KEY", "mk")
        .env("DATABASE_URL_UNUSED_OK", "postgres://")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ok (4 deployments in 3 model groups)"),
        "{stdout}"
    );
    for key in [
        "litellm_settings.drop_params",
        "litellm_settings.num_retries",
        "litellm_settings.success_callback",
        "litellm_settings.cache",
        "general_settings.database_url",
    ] {
        assert!(
            stderr.contains(&format!("ignoring unknown key {key}")),
            "{key}: {stderr}"
        );
    }
    assert!(!stderr.contains("sk-a") && !stdout.contains("sk-a"));
}

#[test]
fn bad_provider_fails_with_path_and_exit_code_2() {
    let path = repo_root().join("tests/fixtures/configs/bad-provider.yaml");
    for args in [vec!["check-config"], vec!["serve", "--config"]] {
        let out = sluice().args(&args).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("model_list[1].litellm_params.model: unknown provider \"opnai\""),
            "{stderr}"
        );
    }
}

#[test]
fn missing_env_var_and_missing_file_fail_clearly() {
    let out = sluice()
        .arg("check-config")
        .arg(repo_root().join("tests/fixtures/configs/litellm-proxy.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "model_list[0].litellm_params.api_key: environment variable OPENAI_API_KEY is not set"
        ),
        "{stderr}"
    );
    let out = sluice()
        .arg("check-config")
        .arg("/nonexistent.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.yaml"));
}
