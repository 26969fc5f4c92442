//! The parts of the bench that run alone (`bench storm`, `bench pool`,
//! `bench load`...): each prints its own table and writes nothing.

use crate::attack::Attack;
use crate::blackhole::Blackhole;
use crate::format::{self, thousands};
use crate::load::{self, Plan, Scenario, Target};
use crate::{Args, Context, attacks, digests, pool, replicas, storm};
use crate::{ledger, report, run, templates};

pub(crate) async fn blackhole_alone() -> Result<(), String> {
    let blackhole = Blackhole::start()
        .await
        .map_err(|err| format!("cannot start the blackhole: {err}"))?;
    println!("{}", blackhole.webhook_url());
    std::future::pending::<()>().await;
    Ok(())
}

pub(crate) fn templates_alone() -> Result<(), String> {
    let cost = templates::measure()?;
    let mut md = String::new();
    templates::markdown(&mut md, &cost);
    println!("{md}");
    Ok(())
}

pub(crate) async fn storm_alone(args: &Args) -> Result<(), String> {
    row_alone(args, storm, |md, row| storm::markdown(md, row, None)).await
}

pub(crate) async fn digests_alone(args: &Args) -> Result<(), String> {
    row_alone(args, digests, digests::markdown).await
}

pub(crate) async fn replicas_alone(args: &Args) -> Result<(), String> {
    row_alone(args, replicas, |md, row| replicas::markdown(md, row, None)).await
}

pub(crate) async fn ledger_alone(args: &Args) -> Result<(), String> {
    let ctx = Context::prepare(args).await?;
    let row = tokio::time::timeout(ledger::TIMEOUT, ledger::measure(&ctx, args)).await;
    drop(ctx);
    let row = row.map_err(|_| format!("the ledger row took over {:?}", ledger::TIMEOUT))??;
    let mut md = String::new();
    ledger::markdown(&mut md, &row);
    println!("{md}");
    Ok(())
}

pub(crate) async fn pool_alone(args: &Args) -> Result<(), String> {
    row_alone(args, pool, |md, row| pool::markdown(md, row, None)).await
}

/// Measures one row on a context of its own (dropped, with its processes,
/// before printing) and prints its section of the report.
async fn row_alone<T>(
    args: &Args,
    measure: impl AsyncFnOnce(&Context) -> Result<T, String>,
    markdown: fn(&mut String, &T),
) -> Result<(), String> {
    let ctx = Context::prepare(args).await?;
    let row = measure(&ctx).await;
    drop(ctx);
    let mut md = String::new();
    markdown(&mut md, &row?);
    println!("{md}");
    Ok(())
}

pub(crate) async fn load_alone(
    scenario: Scenario,
    target: Target,
    concurrency: usize,
    events: u64,
) -> Result<(), String> {
    let plan = Plan::new(scenario, concurrency, events, 300);
    let m = load::run(scenario, target, plan).await?;
    println!(
        "{} at {concurrency}: {} events/s, p50 {}, p99 {}, max {}, {} failed, CPU {:.2} s / 10k events",
        scenario.name(),
        thousands(m.events_per_sec()),
        format::ms(m.percentile(0.5)),
        format::ms(m.percentile(0.99)),
        format::ms(m.percentile(1.0)),
        m.errors,
        m.cpu_per_10k(run::ticks_per_second())
    );
    Ok(())
}

pub(crate) async fn attacks_alone(args: &Args, only: Option<Attack>) -> Result<(), String> {
    let ctx = Context::prepare(args).await?;
    let chosen: Vec<Attack> = only.map_or_else(|| Attack::ALL.to_vec(), |a| vec![a]);
    let attacked = attacks(&ctx, &chosen).await;
    drop(ctx);
    let attacked = attacked?;
    println!("\n{}", report::attack_table(&attacked));
    Ok(())
}
