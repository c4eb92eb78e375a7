//! mnemom-gateway: the host.
