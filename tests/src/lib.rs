//! Shared helpers for chunkvault's workspace-level integration tests.
