//! Provider adapter for the Anthropic Messages API, built as a `provider-adapter` component.
#![expect(unsafe_code, reason = "wit-bindgen generates the component ABI glue as unsafe code")]

wit_bindgen::generate!({
    world: "provider-adapter",
    path: "../../wit",
});

use exports::mnemom::gateway::adapter::Guest;
use mnemom::gateway::types::*;

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Descriptor {
        Descriptor {
            name: "anthropic".into(),
            route_prefix: "/anthropic".into(),
            default_upstream: "https://api.anthropic.com".into(),
            credential_sources: vec![CredentialSource::Header("x-api-key".into())],
        }
    }
    fn transform_request(_r: RequestInfo, _b: Vec<u8>) -> Result<RequestPlan, AdapterError> {
        Err(AdapterError::Internal("x".into()))
    }
    fn parse_response(_b: Vec<u8>) -> Result<Extraction, AdapterError> {
        Err(AdapterError::Internal("x".into()))
    }
    fn parse_event(_e: SseEvent) -> Result<StreamDelta, AdapterError> {
        Err(AdapterError::Internal("x".into()))
    }
    fn map_error(_e: GatewayError) -> Vec<u8> {
        Vec::new()
    }
}

export!(Adapter);
