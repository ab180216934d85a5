//! `rm`: delete the objects holding chunks at given timestamps, or a whole conversation.
//!
//! By timestamp: single-chunk objects at that timestamp and Omi batches whose range holds it
//! are deleted whole (an Omi batch cannot lose single chunks); a pack loses exactly the chunks
//! holding the instant — it is rewritten without them (the new pack written and read back
//! before the old one is deleted), or deleted when nothing is left.

use anyhow::Result;
use serde_json::json;

use crate::cli::RmArgs;
use crate::context::{self, Context};
use crate::output;

/// Runs `rm`.
pub(crate) async fn run(ctx: &Context, args: &RmArgs) -> Result<()> {
    let uid = context::user(&args.target.uid)?;
    let conversation = context::conversation(&args.target.conversation)?;
    let service = ctx.reader()?;
    if args.all {
        let deleted = service.delete_conversation(&uid, &conversation).await?;
        if ctx.json {
            return output::print_json(&json!({"deleted_count": deleted, "all": true}));
        }
        outln!("deleted conversation {conversation} of user {uid}: {deleted} object(s)")?;
        return Ok(());
    }
    let report = service
        .delete(&uid, &conversation, &args.timestamps)
        .await?;
    // Which requested timestamps no deleted object held (nothing was there).
    let unmatched: Vec<String> = args
        .timestamps
        .iter()
        .filter(|ts| {
            !report.deleted.iter().any(|path| {
                path.rsplit('/')
                    .next()
                    .and_then(|name| name.parse::<chunk_format::ObjectName>().ok())
                    .is_some_and(|name| name.covers(**ts))
            })
        })
        .map(ToString::to_string)
        .collect();
    if ctx.json {
        return output::print_json(&json!({
            "deleted": report.deleted,
            "deleted_count": report.deleted.len(),
            "written": report.written,
            "unmatched": unmatched,
        }));
    }
    for path in &report.deleted {
        outln!("deleted {path}")?;
    }
    for path in &report.written {
        outln!("wrote   {path} (a pack rewritten without the deleted chunks)")?;
    }
    outln!(
        "{} object(s) deleted, {} pack(s) rewritten",
        report.deleted.len(),
        report.written.len()
    )?;
    if !unmatched.is_empty() {
        outln!("no object held a chunk at: {}", unmatched.join(", "))?;
    }
    Ok(())
}
