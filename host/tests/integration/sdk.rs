//! The official Python SDKs (`anthropic`, `openai`, `google-genai`), installed by
//! `tests/sdk/setup.sh` into a virtualenv, pointed at the gateway (which points at the mock):
//! streamed and non-streamed calls succeed and return the same content as a direct call.

use std::path::Path;
use std::process::Command;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_through_the_gateway() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let setup = Command::new("bash")
        .arg(root.join("tests/sdk/setup.sh"))
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "tests/sdk/setup.sh failed:\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();

    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let script = root.join("tests/sdk/check_sdks.py");
    let gateway_url = gateway.url("");
    let direct_url = mock.base_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--gateway", &gateway_url, "--direct", &direct_url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
