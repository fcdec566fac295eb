//! agent.json per infrastructure: the typed constructors against the reference documents
//! (tests/fixtures/agent-json, from the official builder's agent.json files), and the OS-dependent parts.

use serde_json::Value;
use std::path::Path;
use stemcell::recipe::agent_settings::AgentConfig;

fn reference(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-json")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn json(config: &AgentConfig) -> Value {
    serde_json::from_str(&config.to_json()).unwrap()
}

#[test]
fn jammy_agent_json_equals_the_reference_for_every_infrastructure() {
    for infra in [
        "openstack",
        "cloudstack",
        "vsphere",
        "aws",
        "google",
        "azure",
        "alicloud",
        "warden",
    ] {
        let built = AgentConfig::for_build(infra, "ubuntu-jammy").unwrap();
        assert_eq!(json(&built), reference(infra), "{infra}");
        // The reference decodes into the same typed value (no field lost or renamed).
        let decoded: AgentConfig = serde_json::from_value(reference(infra)).unwrap();
        assert_eq!(decoded, built, "{infra}");
    }
    assert_eq!(
        json(&AgentConfig::for_build("vcloud", "ubuntu-jammy").unwrap()),
        reference("vsphere")
    );
}

#[test]
fn noble_and_debian_add_only_the_systemd_service_manager() {
    for os in ["ubuntu-noble", "debian-bookworm"] {
        for infra in [
            "openstack",
            "cloudstack",
            "vsphere",
            "aws",
            "google",
            "azure",
            "alicloud",
        ] {
            let mut expected = reference(infra);
            expected["Platform"]["Linux"]["ServiceManager"] = Value::from("systemd");
            assert_eq!(
                json(&AgentConfig::for_build(infra, os).unwrap()),
                expected,
                "{os} {infra}"
            );
        }
        // Warden containers keep runit: no ServiceManager.
        assert_eq!(
            json(&AgentConfig::for_build("warden", os).unwrap()),
            reference("warden")
        );
    }
}

#[test]
fn agent_json_text_is_pretty_with_a_trailing_newline_and_no_nulls() {
    let text = AgentConfig::for_build("openstack", "ubuntu-noble")
        .unwrap()
        .to_json();
    assert!(
        text.starts_with("{\n  \"Platform\": {\n    \"Linux\": {\n"),
        "{text}"
    );
    assert!(text.ends_with("}\n"));
    assert!(!text.contains("null"), "{text}");
}
