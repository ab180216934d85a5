//! `compact`: merge a conversation's small objects into packs — show the plan, then apply it.
//!
//! The plan comes from [`chunk_service::ChunkService::plan_compaction`] (one listing; no change);
//! applying it ([`chunk_service::ChunkService::compact`]) writes each new pack create-only,
//! reads it back, and only then deletes the objects it replaces. New packs are sealed whenever
//! a source was sealed, so the secret is needed for conversations with encrypted objects.

use std::time::{Duration, Instant};

use anyhow::Result;
use chunk_service::{CompactionOptions, CompactionPlan};
use serde_json::json;

use crate::cli::CompactArgs;
use crate::context::{self, Context};
use crate::output;

/// Runs `compact`.
pub(crate) async fn run(ctx: &Context, args: &CompactArgs) -> Result<()> {
    let uid = context::user(&args.target.uid)?;
    let conversation = context::conversation(&args.target.conversation)?;
    let service = ctx.reader()?;
    let options = CompactionOptions {
        target_duration: Duration::from_secs(u64::from(args.target_secs)),
        ..CompactionOptions::default()
    };
    let plan = service
        .plan_compaction(&uid, &conversation, &options)
        .await?;
    if !ctx.json {
        print_plan(&plan)?;
    }
    if args.dry_run || plan.groups.is_empty() {
        if ctx.json {
            output::print_json(&json!({"plan": plan, "applied": false}))?;
        } else if args.dry_run && !plan.groups.is_empty() {
            outln!("dry run: nothing changed")?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let report = service.compact(&plan).await?;
    if ctx.json {
        return output::print_json(&json!({"plan": plan, "applied": true, "report": report}));
    }
    for path in &report.written {
        outln!("wrote   {path}")?;
    }
    for (path, reason) in &report.skipped {
        outln!("skipped {path}: {reason}")?;
    }
    for (path, reason) in &report.declined {
        outln!("left    the group starting with {path}: {reason}")?;
    }
    outln!(
        "compacted {} object(s) into {} pack(s) holding {} chunk(s) in {}; {} object(s) left \
         undecodable in place",
        report.deleted.len(),
        report.written.len(),
        report.chunks,
        output::duration(started.elapsed()),
        report.skipped.len()
    )?;
    Ok(())
}

fn print_plan(plan: &CompactionPlan) -> Result<()> {
    if plan.groups.is_empty() {
        return outln!(
            "nothing to compact in conversation {} of user {} ({} object(s))",
            plan.conversation,
            plan.uid,
            plan.cost.objects_before
        );
    }
    outln!(
        "plan for conversation {} of user {}: {} object(s) -> {} ({} new pack(s))",
        plan.conversation,
        plan.uid,
        plan.cost.objects_before,
        plan.cost.objects_after,
        plan.groups.len()
    )?;
    for (i, group) in plan.groups.iter().enumerate() {
        let bytes: u64 = group.sources.iter().map(|s| s.size).sum();
        outln!(
            "  pack {} from {}: {} object(s), {}",
            i + 1,
            group.start,
            group.sources.len(),
            output::bytes(bytes)
        )?;
        for source in &group.sources {
            outln!("    {}", source.path)?;
        }
    }
    if !plan.shadowed.is_empty() {
        outln!(
            "  discards {}.{:03} s of shadowed audio (held twice; downloads serve the earlier copy):",
            plan.shadowed_ms / 1000,
            plan.shadowed_ms % 1000
        )?;
        for overlap in &plan.shadowed {
            outln!(
                "    {} samples at {}.{:03} of {} (under {})",
                overlap.span.samples,
                overlap.span.start_ms / 1000,
                overlap.span.start_ms % 1000,
                output::escaped(&overlap.trimmed),
                output::escaped(&overlap.kept)
            )?;
        }
    }
    let cost = &plan.cost;
    outln!(
        "cost: {} read(s) ({}), {} write(s), {} stat(s), {} delete(s)",
        cost.reads,
        output::bytes(cost.read_bytes),
        cost.writes,
        cost.stats,
        cost.deletes
    )
}
