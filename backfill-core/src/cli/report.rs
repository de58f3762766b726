//! `report`: the volumetry report of the entities in scope, printed and written as files.

use std::path::PathBuf;

use clap::Args;
use raw_sink::{PgConfig, Sink};

use crate::entity::{ENTITIES, EntityInfo};
use crate::report::{self, ReportScope};
use crate::{Entity, Error, ExitStatus};

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write report.md, report.json and rows_per_day.svg into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cover every entity, not only this binary's.
    #[arg(long)]
    pub all: bool,
    /// Only this company (default: QBO_REALM_ID when set).
    #[arg(long, conflicts_with = "all_realms")]
    pub realm: Option<String>,
    /// Every company, even when QBO_REALM_ID is set.
    #[arg(long)]
    pub all_realms: bool,
    /// How many of the latest runs to list.
    #[arg(long, default_value = "50")]
    pub runs: u32,
}

/// The entities a dedicated binary's report covers: its own, or with `--all` every built-in
/// one (and its own, should it not be built in).
pub(super) fn entities<E: Entity>(args: &ReportArgs) -> Vec<EntityInfo> {
    let mut entities = vec![EntityInfo::of::<E>()];
    if args.all {
        entities = ENTITIES.to_vec();
        if !entities.contains(&EntityInfo::of::<E>()) {
            entities.push(EntityInfo::of::<E>());
        }
    }
    entities
}

/// `report`: builds the volumetry report, prints its summary, writes the files with `--out`.
/// Exits 1 when a window in scope is not done or mismatches its source COUNT.
pub(super) async fn report_cmd(
    args: &ReportArgs,
    entities: Vec<EntityInfo>,
) -> Result<ExitStatus, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let scope = ReportScope {
        entities,
        realm_id: if args.all_realms {
            None
        } else {
            // QBO_REALM_ID is read here, not by clap: clap would count it as given and
            // refuse --all-realms whenever it is set.
            args.realm
                .clone()
                .or_else(|| std::env::var("QBO_REALM_ID").ok())
                .filter(|r| !r.trim().is_empty())
        },
        runs_limit: args.runs,
    };
    let report = report::build(&sink, &scope).await?;
    print!("{}", report.summary());
    if let Some(dir) = &args.out {
        let files = report.write_to(dir)?;
        println!(
            "evidence: {}, {}, {}",
            files.markdown.display(),
            files.json.display(),
            files.svg.display()
        );
    }
    Ok(if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::WindowsFailed
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, parse};

    #[test]
    fn report_subcommand_parses() {
        let cli = parse(&[
            "report", "--out", "ev", "--all", "--realm", "9", "--runs", "5",
        ])
        .unwrap();
        let Some(Command::Report(r)) = cli.command else {
            panic!("not a report")
        };
        assert_eq!(r.out.as_deref(), Some(std::path::Path::new("ev")));
        assert!(r.all && !r.all_realms);
        assert_eq!((r.realm.as_deref(), r.runs), (Some("9"), 5));
        assert!(parse(&["report", "--realm", "9", "--all-realms"]).is_err());
    }
}
