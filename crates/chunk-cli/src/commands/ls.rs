//! `ls`: a conversation's audio objects as a table, or `{"chunks": [...], "foreign": [...]}`.

use anyhow::Result;
use chunk_service::ConversationListing;
use serde_json::{Value, json};

use crate::cli::ConversationArgs;
use crate::context::{self, Context};
use crate::output;

/// Lists the conversation with one paged listing (plus one stat per Omi batch on stores
/// that keep metadata, for the batch's v2 span).
pub(crate) async fn run(ctx: &Context, args: &ConversationArgs) -> Result<()> {
    let uid = context::user(&args.uid)?;
    let conversation = context::conversation(&args.conversation)?;
    let listing = ctx.reader()?.list_with_spans(&uid, &conversation).await?;
    if ctx.json {
        return output::print_json(&to_json(&listing));
    }
    output::write_text(&to_table(&listing))?;
    Ok(())
}

/// The JSON form: `chunks` sorted by start (timestamps as numbers of seconds, plus their exact
/// three-decimal text, and an Omi batch's v2 `span` as Omi's listing gives it:
/// `{"start", "samples", "sample_rate"}`, only where it has one), `foreign` apart.
pub(crate) fn to_json(listing: &ConversationListing) -> Value {
    let chunks: Vec<Value> = listing
        .chunks
        .iter()
        .map(|entry| {
            let mut value = json!({
                "timestamp": entry.start.as_f64(),
                "end": entry.end.as_f64(),
                "start_text": entry.start.to_string(),
                "end_text": entry.end.to_string(),
                "path": entry.path,
                "size": entry.size,
                "is_batch": entry.is_batch,
                "kind": entry.kind.extension(),
            });
            if let Some(span) = entry.span {
                value["span"] = json!({
                    "start": span.start,
                    "samples": span.samples,
                    "sample_rate": span.sample_rate,
                });
            }
            value
        })
        .collect();
    let foreign: Vec<Value> = listing
        .foreign
        .iter()
        .map(|entry| json!({"path": entry.path, "size": entry.size, "reason": entry.reason}))
        .collect();
    json!({"chunks": chunks, "foreign": foreign})
}

/// The table form, foreign objects listed under it.
pub(crate) fn to_table(listing: &ConversationListing) -> String {
    let rows: Vec<Vec<String>> = listing
        .chunks
        .iter()
        .map(|entry| {
            vec![
                entry.start.to_string(),
                if entry.end == entry.start {
                    "-".to_owned()
                } else {
                    entry.end.to_string()
                },
                entry.kind.extension().to_owned(),
                entry.size.to_string(),
                output::escaped(&entry.path),
            ]
        })
        .collect();
    let mut text = output::table(&["START", "END", "KIND", "SIZE", "PATH"], &rows);
    let total: u64 = listing.chunks.iter().map(|e| e.size).sum();
    text.push_str(&format!(
        "{} audio object(s), {}\n",
        listing.chunks.len(),
        output::bytes(total)
    ));
    if !listing.foreign.is_empty() {
        text.push_str(&format!(
            "{} foreign object(s), not audio:\n",
            listing.foreign.len()
        ));
        for entry in &listing.foreign {
            // Printed escaped: a foreign name is anyone's bytes (newlines, escapes).
            text.push_str(&format!(
                "  {} ({} B): {}\n",
                output::escaped(&entry.path),
                entry.size,
                output::escaped(&entry.reason)
            ));
        }
    }
    text
}
