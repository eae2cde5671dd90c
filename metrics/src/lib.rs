//! The process's metrics, in Prometheus' text exposition format (0.0.4).
//!
//! One registry per process ([`global`]): every role running in it (a
//! gateway, the ledger, the approval service, or all of them under
//! `vigil up`) registers its series there, and `/metrics` renders them.
//! Counters and gauges are atomics behind an `Arc`, so the hot path takes
//! no lock once a handle is held; [`gauge_fn`] series are computed at
//! scrape time (queue depths, log size, ages).
//!
//! Hand-written rather than a crate: what Vigil needs is three series
//! types and the text format, and the dependency budget is spent where it
//! buys more.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Label names and values of one series, in the order given.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// The registry of this process.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

/// A counter of this process (see [`Registry::counter`]).
pub fn counter(name: &'static str, help: &'static str, labels: Labels<'_>) -> Counter {
    global().counter(name, help, labels)
}

/// A gauge of this process (see [`Registry::gauge`]).
pub fn gauge(name: &'static str, help: &'static str, labels: Labels<'_>) -> Gauge {
    global().gauge(name, help, labels)
}

/// A histogram of this process (see [`Registry::histogram`]).
pub fn histogram(
    name: &'static str,
    help: &'static str,
    labels: Labels<'_>,
    buckets: &'static [f64],
) -> Histogram {
    global().histogram(name, help, labels, buckets)
}

/// A gauge of this process computed when scraped (see [`Registry::gauge_fn`]).
pub fn gauge_fn(
    name: &'static str,
    help: &'static str,
    labels: Labels<'_>,
    f: impl Fn() -> f64 + Send + Sync + 'static,
) {
    global().gauge_fn(name, help, labels, f)
}

/// A count that only goes up.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn dec(&self) {
        self.add(-1);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into fixed buckets (cumulative when rendered).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramData>);

#[derive(Debug)]
struct HistogramData {
    bounds: &'static [f64],
    /// One count per bound, then the overflow (`+Inf` less the rest).
    counts: Vec<AtomicU64>,
    /// The sum, in nanounits (so it stays an integer atomic).
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation (in the histogram's unit, e.g. seconds).
    pub fn observe(&self, value: f64) {
        let d = &self.0;
        let slot = d
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(d.bounds.len());
        d.counts[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = (value.max(0.0) * 1e9) as u64;
        d.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Buckets for latencies of tens of microseconds to seconds.
pub const LATENCY_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    GaugeFn(Arc<dyn Fn() -> f64 + Send + Sync>),
}

impl Series {
    /// Another handle on the same series.
    fn share(&self) -> Series {
        match self {
            Series::Counter(c) => Series::Counter(c.clone()),
            Series::Gauge(g) => Series::Gauge(g.clone()),
            Series::Histogram(h) => Series::Histogram(h.clone()),
            Series::GaugeFn(f) => Series::GaugeFn(f.clone()),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Series::Counter(_) => "counter",
            Series::Gauge(_) | Series::GaugeFn(_) => "gauge",
            Series::Histogram(_) => "histogram",
        }
    }
}

struct Family {
    help: &'static str,
    /// Rendered label set (`{a="b",c="d"}` or empty) -> series.
    series: BTreeMap<String, Series>,
}

/// Series by metric name.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// The counter `name{labels}`, created at 0 the first time. Asking
    /// again gives the same counter.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: Labels<'_>) -> Counter {
        self.series(
            name,
            help,
            labels,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// The gauge `name{labels}`, created at 0 the first time.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: Labels<'_>) -> Gauge {
        self.series(
            name,
            help,
            labels,
            || Series::Gauge(Gauge::default()),
            |s| match s {
                Series::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// The histogram `name{labels}` with these bucket bounds (ascending).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        bounds: &'static [f64],
    ) -> Histogram {
        let make = || {
            Series::Histogram(Histogram(Arc::new(HistogramData {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            })))
        };
        self.series(name, help, labels, make, |s| match s {
            Series::Histogram(h) => Some(h.clone()),
            _ => None,
        })
    }

    /// `name{labels}` is whatever `f` says when scraped (replacing an
    /// earlier function of the same series).
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut families = self.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        family
            .series
            .insert(render_labels(labels), Series::GaugeFn(Arc::new(f)));
    }

    fn series<T>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        make: impl FnOnce() -> Series,
        get: impl Fn(&Series) -> Option<T>,
    ) -> T {
        let mut families = self.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        let series = family
            .series
            .entry(render_labels(labels))
            .or_insert_with(make);
        // A name is one type: asking for a counter named as a gauge is a
        // bug in the caller, caught by the tests that touch it.
        get(series).unwrap_or_else(|| panic!("metric {name} registered as another type"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Family>> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every series, in the text exposition format. The registry is
    /// locked only to copy the handles: scrape-time gauges (which may lock
    /// what they read) run after, so a scrape never holds up a session
    /// asking for a series.
    pub fn render(&self) -> String {
        type Snapshot = Vec<(&'static str, &'static str, Vec<(String, Series)>)>;
        let snapshot: Snapshot = {
            let families = self.lock();
            families
                .iter()
                .map(|(name, family)| {
                    let series = family
                        .series
                        .iter()
                        .map(|(labels, s)| (labels.clone(), s.share()))
                        .collect();
                    (*name, family.help, series)
                })
                .collect()
        };
        let mut out = String::new();
        for (name, help, series) in snapshot {
            let Some((_, first)) = series.first() else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {}", first.type_name());
            for (labels, series) in &series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.get());
                    }
                    Series::GaugeFn(f) => {
                        let _ = writeln!(out, "{name}{labels} {}", number(f()));
                    }
                    Series::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let d = &h.0;
    let mut cumulative = 0;
    for (i, bound) in d.bounds.iter().enumerate() {
        cumulative += d.counts[i].load(Ordering::Relaxed);
        let le = with_label(labels, "le", &number(*bound));
        let _ = writeln!(out, "{name}_bucket{le} {cumulative}");
    }
    cumulative += d.counts[d.bounds.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "{name}_bucket{} {cumulative}",
        with_label(labels, "le", "+Inf")
    );
    let sum = d.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum{labels} {}", number(sum));
    let _ = writeln!(out, "{name}_count{labels} {cumulative}");
}

/// `{a="1",b="2"}` from the pairs, values escaped; empty for no labels.
fn render_labels(labels: Labels<'_>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// `labels` with one more pair appended (for a histogram's `le`).
fn with_label(labels: &str, key: &str, value: &str) -> String {
    match labels.strip_suffix('}') {
        Some(open) => format!("{open},{key}=\"{value}\"}}"),
        None => format!("{{{key}=\"{value}\"}}"),
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_the_text_format() {
        let r = Registry::default();
        let c = r.counter("vigil_t_total", "Things.", &[("kind", "a\"b")]);
        c.add(3);
        // The same series again is the same counter.
        r.counter("vigil_t_total", "Things.", &[("kind", "a\"b")])
            .inc();
        r.counter("vigil_t_total", "Things.", &[("kind", "plain")]);
        let g = r.gauge("vigil_open", "Open now.", &[]);
        g.inc();
        g.inc();
        g.dec();
        r.gauge_fn("vigil_depth", "Depth.", &[("queue", "outbox")], || 7.5);
        let h = r.histogram(
            "vigil_latency_seconds",
            "Latency.",
            &[("mode", "durable")],
            &[0.001, 0.01],
        );
        h.observe(0.0005);
        h.observe(0.005);
        h.observe(3.0);
        assert_eq!(
            r.render(),
            "# HELP vigil_depth Depth.\n\
             # TYPE vigil_depth gauge\n\
             vigil_depth{queue=\"outbox\"} 7.5\n\
             # HELP vigil_latency_seconds Latency.\n\
             # TYPE vigil_latency_seconds histogram\n\
             vigil_latency_seconds_bucket{mode=\"durable\",le=\"0.001\"} 1\n\
             vigil_latency_seconds_bucket{mode=\"durable\",le=\"0.01\"} 2\n\
             vigil_latency_seconds_bucket{mode=\"durable\",le=\"+Inf\"} 3\n\
             vigil_latency_seconds_sum{mode=\"durable\"} 3.0055\n\
             vigil_latency_seconds_count{mode=\"durable\"} 3\n\
             # HELP vigil_open Open now.\n\
             # TYPE vigil_open gauge\n\
             vigil_open 1\n\
             # HELP vigil_t_total Things.\n\
             # TYPE vigil_t_total counter\n\
             vigil_t_total{kind=\"a\\\"b\"} 4\n\
             vigil_t_total{kind=\"plain\"} 0\n"
        );
    }

    #[test]
    #[should_panic(expected = "registered as another type")]
    fn one_name_is_one_type() {
        let r = Registry::default();
        r.counter("vigil_x", "x", &[]);
        r.gauge("vigil_x", "x", &[]);
    }
}
