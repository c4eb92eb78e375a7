//! What a check is given besides the response: the agent's alignment card (through the cache),
//! its conscience values layered on the defaults, and the task context — from the card, plus
//! the start of the last user message only when the operator allows it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::plugin::policy::{ConscienceKind, ConscienceValue};
use crate::store::{ActiveCard, Store};
use mnemom_plugin_sdk::conscience as sdk_conscience;

/// How long a card stays in the cache (the original's org-card TTL).
pub const CARD_TTL: Duration = Duration::from_secs(300);
/// Characters of user text the task context may carry.
pub const USER_TEXT_CHARS: usize = 200;

/// The cache key of an agent's active card.
pub fn card_key(agent_id: &str) -> String {
    format!("aip:card:{agent_id}")
}

/// The cached form: the card, or the fact that the agent has none.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedCard {
    card: Option<ActiveCard>,
}

/// The agent's active card: from the cache, else from the database (bounded by `timeout`; on
/// timeout or error the check goes on without a card and nothing is cached).
pub async fn active_card(
    cache: &Cache,
    store: Option<&Store>,
    agent_id: &str,
    timeout: Duration,
) -> Option<ActiveCard> {
    let key = card_key(agent_id);
    if let Some(cached) = cache.get_json::<CachedCard>(&key).await {
        return cached.card;
    }
    let store = store?;
    match tokio::time::timeout(timeout, store.active_card(agent_id)).await {
        Ok(Ok(card)) => {
            cache
                .put_json(&key, &CachedCard { card: card.clone() }, Some(CARD_TTL))
                .await;
            card
        }
        Ok(Err(e)) => {
            tracing::debug!(agent = %agent_id, error = %e, "alignment card unavailable");
            None
        }
        Err(_) => {
            tracing::debug!(agent = %agent_id, "alignment card read timed out");
            None
        }
    }
}

/// The conscience values in effect: the defaults, with the agent's own values appended (the
/// original's layering without organisation values, which a self-hosted gateway does not have).
pub fn conscience_values(card: Option<&ActiveCard>) -> Vec<ConscienceValue> {
    let agent = card
        .and_then(|c| c.conscience_values.as_ref())
        .map(sdk_conscience::values_from_json);
    sdk_conscience::layer_values(None, agent)
        .into_iter()
        .map(|v| ConscienceValue {
            id: v.id.to_string(),
            kind: match v.kind {
                sdk_conscience::ConscienceKind::Boundary => ConscienceKind::Boundary,
                sdk_conscience::ConscienceKind::Fear => ConscienceKind::Fear,
                sdk_conscience::ConscienceKind::Commitment => ConscienceKind::Commitment,
                sdk_conscience::ConscienceKind::Belief => ConscienceKind::Belief,
                sdk_conscience::ConscienceKind::Hope => ConscienceKind::Hope,
            },
            content: v.content.to_string(),
        })
        .collect()
}

/// `"<description or role>."`, then `"User request: <text>"` when user text is given.
pub fn task_context(card: Option<&ActiveCard>, user_text: Option<&str>) -> Option<String> {
    let description = card.and_then(|c| {
        let json = &c.card_json;
        json.pointer("/extensions/mnemom/description")
            .or_else(|| json.pointer("/extensions/mnemom/role"))
            .or_else(|| json.get("role"))
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    });
    let mut parts = Vec::new();
    if let Some(d) = description {
        parts.push(format!("{}.", d.trim_end_matches('.')));
    }
    if let Some(text) = user_text.map(str::trim).filter(|t| !t.is_empty()) {
        parts.push(format!(
            "User request: {}",
            truncate_chars(text, USER_TEXT_CHARS)
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// The text of the last user message of a request body in any of the three providers' shapes
/// (Anthropic/OpenAI `messages`, the Responses API `input`, Gemini `contents`), text parts
/// joined with a space. `None` when the body is not JSON or has no user text.
pub fn last_user_text(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text_of = |content: &serde_json::Value| -> Option<String> {
        match content {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| {
                        p.get("text")
                            .and_then(|t| t.as_str())
                            .or_else(|| p.as_str())
                    })
                    .collect();
                (!texts.is_empty()).then(|| texts.join(" "))
            }
            _ => None,
        }
    };
    let last_user = |items: &serde_json::Value, key: &str| -> Option<String> {
        items.as_array()?.iter().rev().find_map(|m| {
            (m.get("role").and_then(|r| r.as_str()) == Some("user"))
                .then(|| m.get(key).and_then(text_of))
                .flatten()
        })
    };
    if let Some(messages) = json.get("messages") {
        return last_user(messages, "content");
    }
    if let Some(contents) = json.get("contents") {
        return last_user(contents, "parts");
    }
    match json.get("input")? {
        serde_json::Value::String(s) => Some(s.clone()),
        items => last_user(items, "content"),
    }
}

/// The AAP card mapped to the AIP card the hosted service expects (`mapCardToAIP`): values in
/// priority order, the description, and the autonomy envelope.
pub fn aip_card(card: &serde_json::Value, card_id: Option<&str>) -> serde_json::Value {
    let declared: Vec<&str> = card
        .pointer("/values/declared")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let values: Vec<serde_json::Value> = declared
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let definition = card.pointer(&format!("/values/definitions/{name}"));
            serde_json::json!({
                "name": name,
                "priority": definition
                    .and_then(|d| d.get("priority"))
                    .and_then(|p| p.as_u64())
                    .unwrap_or(i as u64 + 1),
                "description": definition.and_then(|d| d.get("description")).cloned(),
            })
        })
        .collect();
    let envelope = card.get("autonomy_envelope");
    let list = |key: &str| {
        envelope
            .and_then(|e| e.get(key))
            .cloned()
            .unwrap_or_else(|| serde_json::json!([]))
    };
    serde_json::json!({
        "card_id": card_id.or_else(|| card.get("card_id").and_then(|c| c.as_str())),
        "values": values,
        "agent_description": card.pointer("/extensions/mnemom/description"),
        "autonomy_envelope": {
            "bounded_actions": list("bounded_actions"),
            "forbidden_actions": list("forbidden_actions"),
            "escalation_triggers": list("escalation_triggers"),
        },
    })
}

/// The upper-case type name of a conscience kind (`BOUNDARY`, `FEAR`, ...).
pub fn kind_name(kind: ConscienceKind) -> &'static str {
    match kind {
        ConscienceKind::Boundary => "BOUNDARY",
        ConscienceKind::Fear => "FEAR",
        ConscienceKind::Commitment => "COMMITMENT",
        ConscienceKind::Belief => "BELIEF",
        ConscienceKind::Hope => "HOPE",
    }
}

/// A hybrid answer as a policy report (its verdict is taken as given: the hosted service
/// derives it).
pub fn hybrid_report(response: &crate::analysis::HybridResponse) -> crate::plugin::policy::Report {
    use crate::analysis::Severity as HybridSeverity;
    use crate::plugin::policy::{Concern, Report, Severity, Verdict};
    let checkpoint = &response.checkpoint;
    Report {
        verdict: match checkpoint.verdict {
            crate::store::Verdict::Clear => Verdict::Clear,
            crate::store::Verdict::ReviewNeeded => Verdict::ReviewNeeded,
            crate::store::Verdict::BoundaryViolation => Verdict::BoundaryViolation,
        },
        concerns: checkpoint
            .concerns
            .iter()
            .map(|c| Concern {
                category: c.category.clone(),
                severity: match c.severity {
                    HybridSeverity::Low => Severity::Low,
                    HybridSeverity::Medium => Severity::Medium,
                    HybridSeverity::High => Severity::High,
                    HybridSeverity::Critical => Severity::Critical,
                },
                description: c.description.clone(),
                evidence: c.evidence.clone().unwrap_or_default(),
                relevant_card_field: c.relevant_card_field.clone(),
                relevant_conscience_value: c.relevant_conscience_value.clone(),
            })
            .collect(),
        reasoning_summary: checkpoint.reasoning_summary.clone(),
        conscience_context: None,
        metadata_json: Some(
            serde_json::json!({
                "source": "hybrid",
                "recommended_action": response.recommended_action.as_str(),
                "proceed": response.proceed,
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_from_each_shape() {
        let anthropic = br#"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":"there"}]}]}"#;
        assert_eq!(last_user_text(anthropic).as_deref(), Some("hello there"));
        let responses = br#"{"input":"just a string"}"#;
        assert_eq!(last_user_text(responses).as_deref(), Some("just a string"));
        let responses_items =
            br#"{"input":[{"role":"user","content":[{"type":"input_text","text":"q"}]}]}"#;
        assert_eq!(last_user_text(responses_items).as_deref(), Some("q"));
        let gemini = br#"{"contents":[{"role":"user","parts":[{"text":"gem"}]}]}"#;
        assert_eq!(last_user_text(gemini).as_deref(), Some("gem"));
        assert_eq!(last_user_text(b"not json"), None);
    }

    #[test]
    fn task_context_includes_user_text_only_when_given() {
        let card = ActiveCard {
            id: "ac-1".into(),
            card_json: serde_json::json!({"extensions":{"mnemom":{"description":"Support bot"}}}),
            conscience_values: None,
        };
        assert_eq!(
            task_context(Some(&card), None).as_deref(),
            Some("Support bot.")
        );
        let long = "é".repeat(300);
        let ctx = task_context(Some(&card), Some(&long)).unwrap();
        assert_eq!(
            ctx.chars().count(),
            "Support bot. User request: ".chars().count() + 200
        );
        assert_eq!(task_context(None, None), None);
    }

    #[test]
    fn defaults_are_the_conscience_values_without_agent_values() {
        let values = conscience_values(None);
        assert!(values.iter().any(|v| v.id == "boundary-no-deception"));
        assert_eq!(
            values
                .iter()
                .filter(|v| v.kind == ConscienceKind::Boundary)
                .count(),
            4
        );
    }
}
