//! testkit adapter (in progress).
