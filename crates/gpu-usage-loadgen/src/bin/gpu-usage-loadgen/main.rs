//! `gpu-usage-loadgen`: see `--help` and the crate README.

mod cli;
mod run;
mod steady;

use clap::Parser;

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Jsonl { args, out } => run::jsonl(&args.setup()?, out.as_deref()),
        Command::Csv { args, out } => run::csv(&args.setup()?, out.as_deref()),
        Command::Http { args, http } => run::http(&args.setup()?, http.options(), http.batch).await,
        Command::Redis { args, redis } => {
            run::redis(&args.setup()?, redis.options(), redis.batch).await
        }
        Command::Steady(args) => steady::steady(args).await,
    }
}
