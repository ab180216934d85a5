//! `audit`: a user's timeline per conversation, as the library's audit finds it
//! ([`ChunkService::audit`]): every audio object read and decoded once and placed by the
//! download's own code.
//!
//! The text output has one summary line per conversation and one line per finding; `--json`
//! prints the audits as the library returns them. Exit 1 when an object cannot be decoded,
//! and with `--strict` also on any gap, overlap or duplicate.

use anyhow::{Result, bail};
use chunk_service::{AuditOptions, ConversationAudit};
use serde_json::json;

use crate::cli::AuditArgs;
use crate::context::{self, Context};
use crate::output;

/// Runs `audit`.
pub(crate) async fn run(ctx: &Context, args: &AuditArgs) -> Result<()> {
    let uid = context::user(&args.uid)?;
    let service = ctx.reader()?;
    let options = AuditOptions {
        sample_rate: args.sample_rate,
    };
    let audits = match &args.conversation {
        Some(conversation) => {
            let conversation = context::conversation(conversation)?;
            vec![service.audit(&uid, &conversation, options).await?]
        }
        None => service.audit_user(&uid, options).await?,
    };
    if ctx.json {
        output::print_json(&json!({ "uid": uid.as_str(), "conversations": audits }))?;
    } else {
        for audit in &audits {
            print_text(audit)?;
        }
        if audits.is_empty() {
            outln!("no conversations of user {}", output::escaped(uid.as_str()))?;
        }
    }
    let undecodable: usize = audits.iter().map(|a| a.undecodable.len()).sum();
    if undecodable > 0 {
        bail!("{undecodable} audio object(s) cannot be decoded");
    }
    if args.strict {
        let flagged: Vec<&str> = audits
            .iter()
            .filter(|a| a.has_timeline_findings())
            .map(|a| a.conversation.as_str())
            .collect();
        if let Some(first) = flagged.first() {
            bail!(
                "{} conversation(s) have gaps, overlaps or duplicates (--strict; first: {first})",
                flagged.len()
            );
        }
    }
    Ok(())
}

/// One conversation's audit as text: a summary line, then a line per finding.
fn print_text(audit: &ConversationAudit) -> Result<()> {
    let rate = audit.sample_rate.unwrap_or(16_000);
    let secs = |samples: u64| samples as f64 / f64::from(rate.max(1));
    outln!(
        "{}: {} audio object(s), {:.3} s covered in {} span(s), {} gap(s) ({:.3} s), {} overlap(s) \
         ({:.3} s), {} duplicate(s), {} name mismatch(es), {} undecodable, {} foreign",
        output::escaped(&audit.conversation),
        audit.audio_objects,
        audit.covered_seconds,
        audit.covered.len(),
        audit.gaps.len(),
        secs(audit.gaps.iter().map(|g| g.samples).sum()),
        audit.overlaps.len(),
        secs(audit.overlaps.iter().map(|o| o.span.samples).sum()),
        audit.duplicates.len(),
        audit.name_mismatches.len(),
        audit.undecodable.len(),
        audit.foreign.len(),
    )?;
    let ms = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    for gap in &audit.gaps {
        outln!(
            "  gap       {} .. {} ({} samples)",
            ms(gap.start_ms),
            ms(gap.end_ms),
            gap.samples
        )?;
    }
    for overlap in &audit.overlaps {
        outln!(
            "  overlap   {} .. {} ({} samples): {} kept, {} trimmed",
            ms(overlap.span.start_ms),
            ms(overlap.span.end_ms),
            overlap.span.samples,
            output::escaped(&overlap.kept),
            output::escaped(&overlap.trimmed)
        )?;
    }
    for duplicate in &audit.duplicates {
        outln!(
            "  duplicate {}: {} (used: {})",
            duplicate.at,
            duplicate
                .paths
                .iter()
                .map(|p| output::escaped(p))
                .collect::<Vec<_>>()
                .join(", "),
            duplicate
                .used
                .as_deref()
                .map_or("none".into(), output::escaped)
        )?;
    }
    for mismatch in &audit.name_mismatches {
        outln!(
            "  name      {}: {}",
            output::escaped(&mismatch.path),
            output::escaped(&mismatch.reason)
        )?;
    }
    for bad in &audit.undecodable {
        outln!(
            "  BAD       {}: {}",
            output::escaped(&bad.path),
            output::escaped(output::reason_for(&bad.path, &bad.reason))
        )?;
    }
    for foreign in &audit.foreign {
        outln!(
            "  foreign   {} ({} B): {}",
            output::escaped(&foreign.path),
            foreign.size,
            output::escaped(&foreign.reason)
        )?;
    }
    Ok(())
}
