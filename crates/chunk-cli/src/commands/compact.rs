//! `compact`: rewrite a conversation's objects into packs (plan, then apply).

use anyhow::{Result, bail};

use crate::cli::CompactArgs;
use crate::context::{self, Context};

/// Runs `compact`. Compaction needs the pack layout in chunk-service, which this build lacks.
pub(crate) async fn run(_ctx: &Context, args: &CompactArgs) -> Result<()> {
    let uid = context::user(&args.target.uid)?;
    let conversation = context::conversation(&args.target.conversation)?;
    bail!(
        "compact is not available in this build: chunk-service has no pack layout or compaction \
         planner yet (conversation {conversation} of user {uid} was not touched)"
    )
}
