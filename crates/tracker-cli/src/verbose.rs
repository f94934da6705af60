//! `--verbose`: an in-process `metrics` recorder that keeps every counter, gauge and histogram
//! the stores emit (`tracker_store_operations_total`, `tracker_store_operation_seconds`,
//! `tracker_store_events_total`, ...) for a report at the end of the command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// The values of one histogram.
#[derive(Debug, Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

/// Every metric registered so far, by its name and labels.
#[derive(Debug, Default)]
struct Metrics {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

/// The recorder installed as the process's global one.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Metrics>);

/// A metric's name with its labels, as Prometheus writes it: `name{label="value",...}`.
fn series(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={:?}", label.key(), label.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

/// The entry of `key` in `map`, created on first use.
fn entry<T: Default>(map: &Mutex<BTreeMap<String, Arc<T>>>, key: &Key) -> Arc<T> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(series(key))
        .or_default()
        .clone()
}

impl Recorder for Collector {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(entry(&self.0.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(entry(&self.0.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(entry(&self.0.histograms, key))
    }
}

/// Reads what the installed recorder collected.
#[derive(Debug)]
pub struct Report(Arc<Metrics>);

/// Installs the recorder; `None` (after saying so) if the process already has one.
pub fn install() -> Option<Report> {
    let collector = Collector::default();
    let metrics = collector.0.clone();
    match metrics::set_global_recorder(collector) {
        Ok(()) => Some(Report(metrics)),
        Err(_) => {
            eprintln!("--verbose: another metrics recorder is installed; no report");
            None
        }
    }
}

/// `value` of a histogram named `name`: milliseconds for one in seconds.
fn amount(name: &str, value: f64) -> String {
    if name.contains("_seconds") {
        format!("{:.3}ms", value * 1_000.0)
    } else {
        format!("{value}")
    }
}

/// The value at `quantile` (0 to 1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], quantile: f64) -> f64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Every counter and gauge with its value, and every histogram's count, sum, minimum,
    /// median, 99th percentile and maximum, one per line, sorted by name.
    pub fn report(&self) -> String {
        let mut out = String::from("metrics:\n");
        let counters = self
            .0
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, value) in counters.iter() {
            let _ = writeln!(out, "  {name} {}", value.load(Ordering::Relaxed));
        }
        let gauges = self.0.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, value) in gauges.iter() {
            let _ = writeln!(
                out,
                "  {name} {}",
                f64::from_bits(value.load(Ordering::Relaxed))
            );
        }
        let histograms = self
            .0
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, samples) in histograms.iter() {
            let mut values = samples
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if values.is_empty() {
                continue;
            }
            values.sort_by(f64::total_cmp);
            let sum: f64 = values.iter().sum();
            let _ = writeln!(
                out,
                "  {name} count={} sum={} min={} p50={} p99={} max={}",
                values.len(),
                amount(name, sum),
                amount(name, values[0]),
                amount(name, quantile(&values, 0.5)),
                amount(name, quantile(&values, 0.99)),
                amount(name, values[values.len() - 1]),
            );
        }
        if counters.is_empty() && gauges.is_empty() && histograms.is_empty() {
            out.push_str("  (none recorded)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_counters_and_summarises_histograms() {
        let collector = Collector::default();
        let report = Report(collector.0.clone());
        metrics::with_local_recorder(&collector, || {
            metrics::counter!("ops_total", "store" => "sql", "outcome" => "ok").increment(2);
            metrics::counter!("ops_total", "store" => "sql", "outcome" => "ok").increment(1);
            metrics::counter!("ops_total", "store" => "sql", "outcome" => "conflict").increment(1);
            for value in [0.004, 0.001, 0.002, 0.003] {
                metrics::histogram!("op_seconds", "store" => "sql").record(value);
            }
        });
        let text = report.report();
        assert!(
            text.contains("ops_total{store=\"sql\",outcome=\"ok\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("ops_total{store=\"sql\",outcome=\"conflict\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "op_seconds{store=\"sql\"} count=4 sum=10.000ms min=1.000ms p50=2.000ms \
                 p99=4.000ms max=4.000ms"
            ),
            "{text}"
        );
        assert_eq!(
            Report(Collector::default().0).report(),
            "metrics:\n  (none recorded)\n"
        );
    }
}
