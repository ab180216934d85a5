//! `purge`: delete every object of a user (under every per-user prefix), verified.

use anyhow::{Result, bail};
use chunk_store::layout;
use serde_json::json;

use crate::cli::PurgeArgs;
use crate::context::{self, Context};
use crate::output;

/// Runs `purge`: without `--yes`, says what would be deleted and fails.
pub(crate) async fn run(ctx: &Context, args: &PurgeArgs) -> Result<()> {
    let uid = context::user(&args.uid)?;
    if !args.yes {
        let mut objects = 0usize;
        let mut bytes = 0u64;
        for prefix in layout::user_prefixes(&uid) {
            let found = ctx.store.list_prefix(&prefix).await?.objects;
            objects += found.len();
            bytes += found.iter().map(|(_, size)| size).sum::<u64>();
        }
        bail!(
            "purge deletes every object of user {uid} ({objects} object(s), {}) under {}; \
             run again with --yes to do it",
            output::bytes(bytes),
            layout::user_prefixes(&uid).join(", ")
        );
    }
    let deleted = ctx.reader()?.purge_user(&uid).await?;
    if ctx.json {
        return output::print_json(&json!({"uid": uid.as_str(), "deleted_count": deleted}));
    }
    outln!("purged user {uid}: {deleted} object(s) deleted, every prefix verified empty")?;
    Ok(())
}
