//! `triggers list` / `triggers disable NAME`: the one-time triggers of a pipeline.

use clap::Subcommand;
use raw_sink::{PgConfig, Sink, SinkError, TriggerKey};

use crate::window::{format_utc, printable};
use crate::{Entity, Error, ExitStatus};

/// `triggers` actions.
#[derive(Debug, Subcommand)]
pub enum TriggersAction {
    /// List this pipeline's triggers with their status.
    List {
        /// Only this company (default: every company).
        #[arg(long, env = "QBO_REALM_ID")]
        realm: Option<String>,
    },
    /// Disable a trigger so that it is refused until run with --force.
    Disable {
        /// Trigger name.
        name: String,
        /// The company the trigger belongs to.
        #[arg(long, env = "QBO_REALM_ID", required = true)]
        realm: Option<String>,
    },
}

/// `triggers list` / `triggers disable NAME`.
pub(super) async fn triggers<E: Entity>(action: TriggersAction) -> Result<ExitStatus, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let ledger = sink.ledger();
    match action {
        TriggersAction::List { realm } => {
            let list = ledger
                .list_triggers(Some(E::PIPELINE), realm.as_deref())
                .await
                .map_err(Error::Database)?;
            println!(
                "{:<10} {:<12} {:<42} {:<22} name",
                "status", "realm", "range", "completed"
            );
            for t in list {
                println!(
                    "{:<10} {:<12} {:<42} {:<22} {}",
                    t.status,
                    t.key.realm_id,
                    format!("{}..{}", format_utc(t.range_start), format_utc(t.range_end)),
                    t.completed_at.map_or_else(|| "-".to_owned(), format_utc),
                    printable(&t.key.name)
                );
            }
        }
        TriggersAction::Disable { name, realm } => {
            let realm = realm.unwrap_or_default();
            let key = TriggerKey::new(E::PIPELINE, realm, name.clone());
            match ledger.disable_trigger(&key).await {
                Ok(t) => println!(
                    "trigger {:?} of realm {} is now {}",
                    name,
                    printable(&t.key.realm_id),
                    t.status
                ),
                Err(SinkError::NotFound { .. }) => {
                    return Err(Error::UnknownTrigger {
                        pipeline: E::PIPELINE,
                        name,
                    });
                }
                Err(e) => return Err(Error::Database(e)),
            }
        }
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, parse};

    #[test]
    fn subcommands_need_no_range() {
        let cli = parse(&["triggers", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Triggers {
                action: TriggersAction::List { .. }
            })
        ));
        let cli = parse(&[
            "--log-format",
            "json",
            "triggers",
            "disable",
            "t1",
            "--realm",
            "9",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Triggers { action: TriggersAction::Disable { ref name, ref realm } })
                if name == "t1" && realm.as_deref() == Some("9")
        ));
    }
}
