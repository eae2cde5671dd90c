//! The report every audit check prints.

/// Problems listed before the rest are only counted.
const MAX_LISTED: usize = 100;

/// What a check found: passed checks and problems, each naming the entry
/// it concerns.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    /// Findings an auditor should read that do not make the log invalid
    /// (e.g. a session whose events are not all in the log).
    pub notes: Vec<String>,
    /// Findings that do not make the log invalid but that an auditor must
    /// act on (e.g. evidence pruned younger than the retention period).
    pub warnings: Vec<String>,
    pub problems: Vec<String>,
    unlisted: u64,
    unlisted_notes: u64,
}

impl Report {
    pub fn ok(&mut self, line: String) {
        self.lines.push(line);
    }

    pub fn note(&mut self, line: String) {
        if self.notes.len() < MAX_LISTED {
            self.notes.push(line);
        } else {
            self.unlisted_notes += 1;
        }
    }

    pub fn warn(&mut self, line: String) {
        self.warnings.push(line);
    }

    pub fn problem(&mut self, line: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(line);
        } else {
            self.unlisted += 1;
        }
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as printed: `ok` lines, `FAIL` lines, then a verdict
    /// (`verified: ...` for `verify`, `bundle verified: ...` for bundles).
    pub fn render(&self, subject: &str) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&format!("ok    {l}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("note  {n}\n"));
        }
        if self.unlisted_notes > 0 {
            out.push_str(&format!("note  ... and {} more\n", self.unlisted_notes));
        }
        for w in &self.warnings {
            out.push_str(&format!("WARN  {w}\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("FAIL  {p}\n"));
        }
        if self.unlisted > 0 {
            out.push_str(&format!("FAIL  ... and {} more problems\n", self.unlisted));
        }
        if self.problems.is_empty() && !self.warnings.is_empty() {
            out.push_str(&format!(
                "{subject}verified: every check passed, with {} warning(s) to read\n",
                self.warnings.len()
            ));
        } else if self.problems.is_empty() {
            out.push_str(&format!("{subject}verified: every check passed\n"));
        } else {
            out.push_str(&format!(
                "{}NOT VERIFIED: {} problem(s)\n",
                subject.to_uppercase(),
                self.problems.len() as u64 + self.unlisted
            ));
        }
        out
    }
}
