#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::HashMap;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err_text(yaml: &str, v: &HashMap<String, String>) -> String {
    match Config::from_yaml(yaml, v) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => e.to_string(),
    }
}

const LITELLM_EXAMPLE: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 500
    model_info: { input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001 }
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://localhost:8000/v1
  - model_name: llama
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B
      api_base: http://vllm:8000/v1
general_settings:
  master_key: os.environ/SLUICE_MASTER_KEY
  database_url: postgres://x
litellm_settings:
  drop_params: true
  json_logs: true
router_settings:
  routing_strategy: simple-shuffle
sluice:
  listen: 127.0.0.1:4001
  data_dir: ./data/x
"#;

#[test]
fn litellm_example_loads_with_warnings_for_unknown_keys() {
    let v = vars(&[("OPENAI_API_KEY", "sk-test"), ("SLUICE_MASTER_KEY", "mk")]);
    let c = Config::from_yaml(LITELLM_EXAMPLE, &v).unwrap();
    assert_eq!(c.deployments.len(), 3);
    assert_eq!(c.model_groups(), vec!["gpt-4o", "llama"]);
    let d = &c.deployments[0];
    assert_eq!(d.id, "gpt-4o/0");
    assert_eq!(c.deployments[1].id, "gpt-4o/1");
    assert_eq!(d.api_key.as_ref().unwrap().expose(), "sk-test");
    assert_eq!(d.rpm, Some(500));
    assert_eq!(d.input_cost_per_token, Some(0.0000025));
    assert_eq!(c.deployments[2].upstream_model, "meta-llama/Llama-3.1-8B");
    assert_eq!(c.master_key.as_ref().unwrap().expose(), "mk");
    assert_eq!(c.server.listen.port(), 4001);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.ignored_keys,
        vec![
            "general_settings.database_url",
            "litellm_settings.drop_params"
        ]
    );
    // Secrets never leak through Debug.
    assert!(!format!("{c:?}").contains("sk-test"));
}

#[test]
fn unknown_provider_names_the_path() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/x}\n  - model_name: b\n    litellm_params: {model: opnai/gpt-4o}\n";
    let e = err_text(yaml, &vars(&[]));
    assert!(
        e.starts_with("model_list[1].litellm_params.model: unknown provider \"opnai\""),
        "{e}"
    );
}

#[test]
fn wrong_types_and_values_name_their_paths() {
    let e = err_text(
        "model_list:\n  - model_name: a\n    litellm_params: {model: mock/x, rpm: many}\n",
        &vars(&[]),
    );
    assert!(
        e.starts_with("model_list[0].litellm_params.rpm: invalid type"),
        "{e}"
    );
    let e = err_text(
        "model_list:\n  - model_name: a\n    litellm_params: {model: mock/x, timeout: -1}\nsluice: {listen: nowhere}\n",
        &vars(&[]),
    );
    assert!(
        e.contains("model_list[0].litellm_params.timeout: must be a positive"),
        "{e}"
    );
    assert!(e.contains("sluice.listen: invalid address"), "{e}");
    let e = err_text(
        "model_list:\n  - litellm_params: {model: mock/x}\n",
        &vars(&[]),
    );
    assert!(
        e.contains("model_list[0]: missing field `model_name`"),
        "{e}"
    );
}

#[test]
fn embedding_model_is_parsed_and_checked() {
    let base = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/x}\n";
    let c = Config::from_yaml(base, &vars(&[])).unwrap();
    assert_eq!(
        c.cache.embedding_model,
        crate::embed::EmbeddingModel::Quantized
    );
    let c = Config::from_yaml(
        &format!("{base}sluice: {{cache: {{embedding_model: reference}}}}\n"),
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(
        c.cache.embedding_model,
        crate::embed::EmbeddingModel::Reference
    );
    let e = err_text(
        &format!("{base}sluice: {{cache: {{embedding_model: fp16}}}}\n"),
        &vars(&[]),
    );
    assert!(
        e.contains("sluice.cache.embedding_model: unknown embedding model \"fp16\""),
        "{e}"
    );
}

#[test]
fn missing_env_var_is_reported_without_value() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/gpt-4o, api_key: os.environ/NOPE_KEY}\n";
    let e = err_text(yaml, &vars(&[]));
    assert_eq!(
        e,
        "model_list[0].litellm_params.api_key: environment variable NOPE_KEY is not set"
    );
}

#[test]
fn openai_without_key_is_rejected() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/gpt-4o}\n";
    let e = err_text(yaml, &vars(&[]));
    assert!(
        e.starts_with("model_list[0].litellm_params.api_key: required"),
        "{e}"
    );
}

#[test]
fn every_provider_prefix_loads() {
    for (model, extra) in [
        ("anthropic/claude-sonnet-4-5", ""),
        ("gemini/gemini-2.5-flash", ""),
        ("azure/my-gpt4o", ", api_base: https://x.openai.azure.com"),
        ("groq/llama-3.3-70b-versatile", ""),
    ] {
        let yaml = format!("model_list:\n  - model_name: a\n    litellm_params: {{model: {model}, api_key: k{extra}}}\n");
        let c = Config::from_yaml(&yaml, &vars(&[])).unwrap();
        assert_eq!(c.deployments.len(), 1, "{model}");
    }
    let e = err_text(
        "model_list:\n  - model_name: a\n    litellm_params: {model: azure/my-gpt4o, api_key: k}\n",
        &vars(&[]),
    );
    assert!(e.contains("model_list[0].litellm_params.api_base"), "{e}");
}

#[test]
fn builtin_has_mock_and_adds_openai_with_key() {
    let c = Config::builtin_with(&vars(&[])).unwrap();
    assert!(c.model_groups().contains(&"mock"));
    assert!(!c.model_groups().contains(&"gpt-4o"));
    assert!(c.master_key.is_none());
    let c = Config::builtin_with(&vars(&[
        ("OPENAI_API_KEY", "sk-x"),
        ("SLUICE_MASTER_KEY", "m"),
    ]))
    .unwrap();
    assert!(c.model_groups().contains(&"gpt-4o"));
    assert!(c.master_key.is_some());
    assert!(c.ignored_keys.is_empty());
}

#[test]
fn invalid_yaml_is_reported() {
    let e = err_text("model_list: [", &vars(&[]));
    assert!(e.starts_with("invalid YAML"), "{e}");
}

#[test]
fn embedding_memo_size_defaults_and_can_be_turned_off() {
    let base = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/x}\n";
    let c = Config::from_yaml(base, &vars(&[])).unwrap();
    assert_eq!(
        c.cache.embedding_memo_entries,
        crate::embed::DEFAULT_MEMO_ENTRIES
    );
    let c = Config::from_yaml(
        &format!("{base}sluice: {{cache: {{embedding_memo_entries: 0}}}}\n"),
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(c.cache.embedding_memo_entries, 0);
    let e = err_text(
        &format!("{base}sluice: {{cache: {{embedding_memo_entries: -1}}}}\n"),
        &vars(&[]),
    );
    assert!(e.contains("embedding_memo_entries"), "{e}");
}
