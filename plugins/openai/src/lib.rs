//! openai adapter (in progress).
