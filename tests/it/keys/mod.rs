//! Several keys (accounts or projects) behind one provider: the combined limit used, requests
//! to the key with the most room, a denied key set aside with its reason while the others
//! carry on, the config file's list form, and no key in any output.

mod config;
mod outputs;
mod routing;
mod sim;

use image_router::providers::{OpenAi, ProviderKeys};
use image_router::sim::{SimAccount, SimKeys, Simulator};

/// A key-shaped secret built at run time (never a literal).
pub fn key(tag: &str) -> String {
    format!("sk-keys-{tag}-{}", "Z9q".repeat(8))
}

pub const LABEL_A: &str = "OPENAI_KEY_A";
pub const LABEL_B: &str = "OPENAI_KEY_B";

/// One simulated account with two keys, `a` and `b`, each with its own account settings.
pub async fn two_keys(
    clock: Option<image_router::clock::SharedClock>,
    a: SimAccount,
    b: SimAccount,
) -> Simulator {
    let mut sim = Simulator::builder()
        .account_keys("openai", SimKeys::new().key(key("a"), a).key(key("b"), b));
    if let Some(c) = clock {
        sim = sim.clock(c);
    }
    sim.start().await.unwrap()
}

/// The provider `openai` with both keys, pointed at the simulator.
pub fn provider_keys(sim: &Simulator) -> ProviderKeys {
    OpenAi::builder()
        .name("openai")
        .base_url(sim.openai_base_url("openai"))
        .build_keys([(LABEL_A, key("a")), (LABEL_B, key("b"))])
        .unwrap()
}

/// The names of the two keys as router providers.
pub fn member(label: &str) -> String {
    format!("openai/{label}")
}

/// Fails when any of the keys appears in `out`.
pub fn assert_no_key(out: &str) {
    for tag in ["a", "b", "c"] {
        assert!(
            !out.contains(&key(tag)),
            "a key leaked into the output:\n{out}"
        );
    }
}
