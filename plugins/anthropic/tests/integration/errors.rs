//! `map-error` renders the same envelope as Anthropic's recorded error bodies.

use mnemom_adapter_anthropic::error;
use mnemom_adapter_anthropic::mnemom::gateway::types::{ErrorKind, GatewayError};
use serde_json::Value;

use crate::support::{json_fixtures, read};

#[test]
fn rendered_errors_have_anthropics_envelope() {
    let fixtures: Vec<_> = json_fixtures("error-");
    assert_eq!(fixtures.len(), 2);
    for path in fixtures {
        let mut recorded: Value = serde_json::from_slice(&read(&path)).unwrap();
        // The gateway has no Anthropic request id to give.
        recorded.as_object_mut().unwrap().remove("request_id");
        let rendered = error::render(&GatewayError {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            error_type: recorded["error"]["type"].as_str().unwrap().to_owned(),
            message: recorded["error"]["message"].as_str().unwrap().to_owned(),
        });
        let rendered: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(rendered, recorded, "{}", path.display());
    }
}
