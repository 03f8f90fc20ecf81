//! A labelled task ready to train on and score: its examples split into a training part and a
//! held-out part, its label set and its metric, from any of the sources a user names
//! ([`DataSource`]: GLUE's files, their own table, or the bundled Rotten Tomatoes sentences).
//! Training and benchmarks read the same source the same way, so a benchmark scores exactly
//! the examples training held out.

use super::{Columns, Example, Format, LabelSet, SPLIT_SEED, Task, split};
use crate::error::{Result, invalid};
use crate::metrics::Metric;
use std::path::{Path, PathBuf};

/// Where a task's labelled examples come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A GLUE task's folder (`train.tsv`, the dev file) or one of its files.
    Glue {
        /// The task.
        task: Task,
        /// Its folder or file.
        path: PathBuf,
    },
    /// A user's CSV, TSV or JSON Lines table.
    Table {
        /// The file.
        path: PathBuf,
        /// Which columns hold texts and labels.
        columns: Columns,
        /// Its format.
        format: Format,
    },
    /// The Rotten Tomatoes sentences of the asset cache (the pool's default task).
    RottenTomatoes,
}

/// A labelled task: its examples split for training and held out, its labels and its metric.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// The task's name, as reports print it (`MRPC`, or the data file's name).
    pub name: String,
    /// The examples to train on.
    pub train: Vec<Example>,
    /// The examples to score (a GLUE dev file, or a held-out part).
    pub held_out: Vec<Example>,
    /// The label set; its order is a classifier's output order.
    pub labels: LabelSet,
    /// The task's metric.
    pub metric: Metric,
}

impl DataSource {
    /// Reads the source. `held_out_fraction` of a table (or of a GLUE folder without dev
    /// examples) is held out by the fixed split ([`SPLIT_SEED`]); the Rotten Tomatoes sentences
    /// hold out their 20 % whatever it is; `cache` is the asset cache they are in.
    ///
    /// # Errors
    /// If a file cannot be read or parsed, the fraction is not in (0, 1), or the asset is not
    /// in the cache.
    pub fn load(&self, cache: &Path, held_out_fraction: f64) -> Result<TaskData> {
        if !(held_out_fraction > 0.0 && held_out_fraction < 1.0) {
            invalid!("the held-out share {held_out_fraction} is not between 0 and 1");
        }
        match self {
            DataSource::Glue { task, path } => TaskData::glue(*task, path, held_out_fraction),
            DataSource::Table {
                path,
                columns,
                format,
            } => TaskData::table(path, columns, *format, held_out_fraction),
            DataSource::RottenTomatoes => TaskData::rotten_tomatoes(cache),
        }
    }
}

impl TaskData {
    /// A GLUE task read from its folder or file ([`Task::load`]): trained on `train.tsv`,
    /// scored on the dev file (GLUE's test labels are private). Without dev examples,
    /// `held_out_fraction` of the training examples is held out.
    ///
    /// # Errors
    /// If the files cannot be read or parsed, or there are no training examples.
    pub fn glue(task: Task, path: &Path, held_out_fraction: f64) -> Result<Self> {
        let set = task.load(path)?;
        if set.train.is_empty() && set.dev.is_empty() {
            invalid!("{} holds no {} examples", path.display(), task.name());
        }
        let (train, held_out) = if set.dev.is_empty() {
            split(set.train, held_out_fraction, &SPLIT_SEED)?
        } else {
            (set.train, set.dev)
        };
        Ok(TaskData {
            name: task.name().into(),
            train,
            held_out,
            labels: set.labels,
            metric: task.metric(),
        })
    }

    /// A user's table ([`super::read_table`]), `held_out_fraction` of it held out by the fixed
    /// split; scored by accuracy, or by Pearson and Spearman for scores.
    ///
    /// # Errors
    /// If the file cannot be read or parsed.
    pub fn table(
        path: &Path,
        columns: &Columns,
        format: Format,
        held_out_fraction: f64,
    ) -> Result<Self> {
        let table = super::read_table(path, columns, format)?;
        let (train, held_out) = split(table.examples, held_out_fraction, &SPLIT_SEED)?;
        Ok(TaskData {
            name: path
                .file_name()
                .map_or_else(|| "table".into(), |n| n.to_string_lossy().into_owned()),
            train,
            held_out,
            metric: Metric::for_labels(&table.labels),
            labels: table.labels,
        })
    }

    /// The Rotten Tomatoes sentences of the asset cache: 80 % to train on, 20 % held out by
    /// the fixed split ([`SPLIT_SEED`]), the sentences `bench` scores pools on; labelled
    /// `negative` and `positive`, scored by accuracy.
    ///
    /// # Errors
    /// If the asset is not in `cache`.
    pub fn rotten_tomatoes(cache: &Path) -> Result<Self> {
        let examples = |part: Vec<super::LabelledSentence>| -> Vec<Example> {
            part.into_iter()
                .map(|s| Example {
                    text: s.text,
                    text_pair: None,
                    label: super::Label::Class(u32::from(s.label)),
                })
                .collect()
        };
        let (train, held_out) = split(super::rotten_tomatoes(cache)?, 0.2, &SPLIT_SEED)?;
        Ok(TaskData {
            name: ROTTEN_TOMATOES.into(),
            train: examples(train),
            held_out: examples(held_out),
            labels: LabelSet::classes(["negative", "positive"])?,
            metric: Metric::Accuracy,
        })
    }

    /// The experts' share of the training examples: the first three quarters. Every expert
    /// (`train expert`, `train pool`) trains on it alone, so that any of them can join a pool
    /// on the same data.
    pub fn experts_share(&self) -> &[Example] {
        &self.train[..self.router_cut()]
    }

    /// The router's share of the training examples: the last quarter, which no expert has
    /// seen, so that the expert outputs the router learns from look like those at serving
    /// time.
    pub fn router_share(&self) -> &[Example] {
        &self.train[self.router_cut()..]
    }

    fn router_cut(&self) -> usize {
        self.train.len() * 3 / 4
    }
}

/// The name [`TaskData::rotten_tomatoes`] gives its task.
pub const ROTTEN_TOMATOES: &str = "rotten-tomatoes";

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path)
    }

    #[test]
    fn glue_scores_on_dev_and_a_lone_train_file_holds_out_its_share() {
        let folder = DataSource::Glue {
            task: Task::Mrpc,
            path: fixture("glue/MRPC"),
        };
        let d = folder.load(Path::new("/nonexistent"), 0.2).unwrap();
        assert_eq!((d.train.len(), d.held_out.len()), (10, 5));
        assert_eq!((d.name.as_str(), d.metric), ("MRPC", Metric::AccuracyAndF1));
        let lone = DataSource::Glue {
            task: Task::Mrpc,
            path: fixture("glue/MRPC/train.tsv"),
        };
        let d = lone.load(Path::new("/nonexistent"), 0.3).unwrap();
        assert_eq!((d.train.len(), d.held_out.len()), (7, 3));
        for bad in [0.0, 1.0, f64::NAN] {
            let e = lone.load(Path::new("/nonexistent"), bad).unwrap_err();
            assert!(e.to_string().contains("held-out share"), "{e}");
        }
    }

    #[test]
    fn a_table_of_named_labels_is_split_and_scored_by_accuracy() {
        let table = DataSource::Table {
            path: fixture("tables/reviews.csv"),
            columns: Columns::new("review", "label"),
            format: Format::Csv,
        };
        let d = table.load(Path::new("/nonexistent"), 0.34).unwrap();
        assert_eq!((d.train.len(), d.held_out.len()), (4, 2));
        assert_eq!(
            (d.name.as_str(), d.metric),
            ("reviews.csv", Metric::Accuracy)
        );
        assert_eq!(d.labels.names(), ["negative", "neutral", "positive"]);
    }

    #[test]
    fn experts_train_on_three_quarters_and_the_router_reads_the_rest() {
        let d = DataSource::Glue {
            task: Task::Mrpc,
            path: fixture("glue/MRPC"),
        }
        .load(Path::new("/nonexistent"), 0.2)
        .unwrap();
        let (experts, router) = (d.experts_share(), d.router_share());
        assert_eq!((experts.len(), router.len()), (7, 3));
        let mut both = experts.to_vec();
        both.extend_from_slice(router);
        assert_eq!(both, d.train);
    }
}
