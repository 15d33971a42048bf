//! How `linkerd check` runs one check and shows its result: as a table line
//! the moment it is known (`√`, `‼`, `×` with the error and a hint under it),
//! or at the end as Linkerd's JSON.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How often a check that may become true is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Every check, by category.
    Table,
    /// Only the categories with a warning or failure, and the verdict.
    Short,
    /// Linkerd's JSON: `{"success", "categories": [{"categoryName", "checks"}]}`.
    Json,
    /// Nothing printed: the caller takes the JSON (the web dashboard).
    #[value(skip)]
    Quiet,
}

/// One check: what it says it checks, where its hints are, and how a
/// failure counts.
#[derive(Clone)]
pub struct Check {
    pub(crate) description: Cow<'static, str>,
    /// The anchor of its hints under https://linkerd.io/2/checks/.
    anchor: &'static str,
    /// A failure is a warning (`‼`): it does not fail the run.
    warning: bool,
    /// A failure may pass later (pods starting): try again until `--wait`.
    retry: bool,
}

impl Check {
    pub const fn new(description: &'static str, anchor: &'static str) -> Self {
        Check {
            description: Cow::Borrowed(description),
            anchor,
            warning: false,
            retry: false,
        }
    }

    /// A check whose description is made at run time.
    pub fn named(description: String, anchor: &'static str) -> Self {
        Check {
            description: Cow::Owned(description),
            anchor,
            warning: false,
            retry: false,
        }
    }

    pub const fn warning(mut self) -> Self {
        self.warning = true;
        self
    }

    pub const fn retry(mut self) -> Self {
        self.retry = true;
        self
    }

    fn hint(&self) -> String {
        format!("https://linkerd.io/2/checks/#{}", self.anchor)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Warning,
    Error,
}

struct Entry {
    description: Cow<'static, str>,
    hint: String,
    error: String,
    outcome: Outcome,
}

struct Category {
    name: &'static str,
    checks: Vec<Entry>,
}

pub struct Report {
    output: Output,
    deadline: Instant,
    categories: Vec<Category>,
    /// Whether the current category's heading is printed yet.
    headed: bool,
    printed_any: bool,
    failed: bool,
}

impl Report {
    pub fn new(output: Output, wait: Duration) -> Self {
        Report {
            output,
            deadline: Instant::now() + wait,
            categories: Vec::new(),
            headed: false,
            printed_any: false,
            failed: false,
        }
    }

    pub fn category(&mut self, name: &'static str) {
        self.categories.push(Category {
            name,
            checks: Vec::new(),
        });
        self.headed = false;
    }

    /// Runs `f` for `check` (again each second while it fails, for a check
    /// that retries, until `--wait` is up) and records the result; the value
    /// when it passed.
    pub async fn run<T, F, Fut>(&mut self, check: Check, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut said_waiting = false;
        loop {
            match f().await {
                Ok(v) => {
                    self.record(&check, Ok(()));
                    return Some(v);
                }
                Err(e) if check.retry && Instant::now() + RETRY_EVERY < self.deadline => {
                    if !said_waiting && matches!(self.output, Output::Table | Output::Short) {
                        eprintln!("… {} (waiting: {e})", check.description);
                        said_waiting = true;
                    }
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(e) => {
                    self.record(&check, Err(e));
                    return None;
                }
            }
        }
    }

    /// Records a result worked out without `run`.
    pub fn record(&mut self, check: &Check, result: Result<(), String>) {
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Success, String::new()),
            Err(e) if check.warning => (Outcome::Warning, e),
            Err(e) => (Outcome::Error, e),
        };
        if outcome == Outcome::Error {
            self.failed = true;
        }
        let entry = Entry {
            description: check.description.clone(),
            hint: check.hint(),
            error,
            outcome,
        };
        if self.output == Output::Table
            || (self.output == Output::Short && outcome != Outcome::Success)
        {
            self.print(&entry);
        }
        if self.categories.is_empty() {
            self.category("linkerd");
        }
        self.categories
            .last_mut()
            .expect("a category was pushed")
            .checks
            .push(entry);
    }

    fn print(&mut self, entry: &Entry) {
        if !self.headed {
            let name = self.categories.last().map_or("linkerd", |c| c.name);
            if self.printed_any {
                println!();
            }
            println!("{name}\n{}", "-".repeat(name.chars().count()));
            self.headed = true;
            self.printed_any = true;
        }
        let mark = match entry.outcome {
            Outcome::Success => '√',
            Outcome::Warning => '‼',
            Outcome::Error => '×',
        };
        println!("{mark} {}", entry.description);
        if entry.outcome != Outcome::Success {
            for line in entry.error.lines() {
                println!("    {line}");
            }
            println!("    see {} for hints", entry.hint);
        }
    }

    /// Linkerd's JSON of the checks so far.
    pub fn json(&self) -> serde_json::Value {
        let categories: Vec<serde_json::Value> = self
            .categories
            .iter()
            .filter(|c| !c.checks.is_empty())
            .map(|c| {
                let checks: Vec<serde_json::Value> = c
                    .checks
                    .iter()
                    .map(|e| {
                        let mut check = serde_json::json!({
                            "description": e.description,
                            "result": match e.outcome {
                                Outcome::Success => "success",
                                Outcome::Warning => "warning",
                                Outcome::Error => "error",
                            },
                        });
                        if e.outcome != Outcome::Success {
                            check["hint"] = e.hint.clone().into();
                            check["error"] = e.error.clone().into();
                        }
                        check
                    })
                    .collect();
                serde_json::json!({"categoryName": c.name, "checks": checks})
            })
            .collect();
        serde_json::json!({"success": !self.failed, "categories": categories})
    }

    /// Prints the verdict (or the JSON); whether every check passed or only
    /// warned.
    pub fn finish(self) -> bool {
        let success = !self.failed;
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&self.json()).expect("JSON values serialise")
            ),
            Output::Table | Output::Short => {
                if self.printed_any {
                    println!();
                }
                println!(
                    "Status check results are {}",
                    if success { '√' } else { '×' }
                );
            }
            Output::Quiet => {}
        }
        success
    }
}
