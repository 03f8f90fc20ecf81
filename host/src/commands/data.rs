//! The labelled-data options `train expert`, `train pool` and `bench checkpoint` share, so a
//! benchmark names its data as training did and scores the examples training held out.

use anyhow::bail;
use clap::Args;
use securerouter_ml::data::{Columns, DataSource, Format, Task};
use std::path::PathBuf;

/// Where the labelled examples come from: GLUE's files (--task, --data), a table (--data with
/// --text-col and --label-col), or the bundled Rotten Tomatoes sentences.
#[derive(Debug, Args, PartialEq)]
pub struct DataArgs {
    /// The GLUE task of --data: sst2, cola, mrpc, qqp, qnli, rte, mnli or stsb. Without it,
    /// --data is a CSV, TSV or JSON Lines table.
    #[arg(long, requires = "data")]
    pub task: Option<Task>,
    /// The labelled data: a GLUE task folder (train.tsv, dev.tsv) or file, or a table.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The table's text column (JSON key).
    #[arg(long, conflicts_with = "task", requires = "data")]
    pub text_col: Option<String>,
    /// The table's second-sentence column, for a pair task.
    #[arg(long, conflicts_with = "task", requires = "text_col")]
    pub text_pair_col: Option<String>,
    /// The table's label column: names, class numbers or scores.
    #[arg(long, conflicts_with = "task", requires = "data")]
    pub label_col: Option<String>,
    /// The table's format (default: from the file's extension).
    #[arg(long, conflicts_with = "task", requires = "data")]
    pub format: Option<Format>,
    /// The Rotten Tomatoes sentences of the asset cache, the pool's held-out sentences held
    /// out.
    #[arg(long, conflicts_with_all = ["data", "task"])]
    pub rotten_tomatoes: bool,
    /// Share of a table (or of a GLUE folder without a dev file) held out for scoring.
    #[arg(long, default_value_t = 0.2)]
    pub held_out: f64,
}

impl DataArgs {
    /// The data source named, if any.
    pub fn source(&self) -> anyhow::Result<Option<DataSource>> {
        if self.rotten_tomatoes {
            return Ok(Some(DataSource::RottenTomatoes));
        }
        let Some(path) = self.data.clone() else {
            return Ok(None);
        };
        Ok(Some(match (self.task, &self.text_col, &self.label_col) {
            (Some(task), _, _) => DataSource::Glue { task, path },
            (None, Some(text), Some(label)) => {
                let mut columns = Columns::new(text, label);
                if let Some(pair) = &self.text_pair_col {
                    columns = columns.with_pair(pair);
                }
                let format = match self.format {
                    Some(f) => f,
                    None => Format::from_path(&path)?,
                };
                DataSource::Table {
                    path,
                    columns,
                    format,
                }
            }
            (None, _, _) => {
                bail!("--data needs --task (GLUE's files) or --text-col and --label-col (a table)")
            }
        }))
    }
}
