//! OpenDAL layers of the store: operation counting and (for tests) fault injection.
//!
//! The store also applies OpenDAL's own `TimeoutLayer`, `RetryLayer` (temporary errors only,
//! exponential backoff with jitter) and, when configured, `ConcurrentLimitLayer`; see
//! [`crate::StoreOptions`]. The order, from the caller down: concurrency limit → retry →
//! timeout → fault → counting → backend.

pub mod counting;
pub mod fault;

pub use counting::{CountingLayer, OpCounter, OpCounts};
pub use fault::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
