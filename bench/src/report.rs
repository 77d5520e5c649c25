//! One result: a human line and a JSON line on stdout.

use std::fmt::Write as _;

use crate::check::Errors;
use crate::proc::Usage;

/// The outcome of one scenario run.
pub struct Report {
    /// Scenario name, e.g. `fan-in`.
    pub scenario: &'static str,
    /// Free label naming the broker, e.g. `ours` or `mosquitto`.
    pub label: String,
    /// Parameters, in order.
    pub params: Vec<(&'static str, String)>,
    /// The headline figure's name and unit, e.g. `("rate", "msg/s")`.
    pub headline: (&'static str, &'static str),
    /// Measured figures, in order; the headline is among them.
    pub metrics: Vec<(&'static str, f64)>,
    /// Loss, duplication, reordering.
    pub errors: Errors,
    /// Broker CPU and memory.
    pub broker: Usage,
    /// Generator CPU seconds.
    pub bench_cpu_s: Option<f64>,
    /// Wall-clock seconds of the measured part.
    pub wall_s: f64,
    /// Wall-clock seconds of the whole run, setup included: the span the CPU times cover.
    pub run_s: f64,
    /// Whether the run finished before its time limit.
    pub completed: bool,
}

fn num(v: f64) -> String {
    if v.is_finite() {
        if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") }
    } else {
        "null".into()
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Report {
    /// Whether the run was correct: finished, nothing lost, duplicated, reordered or foreign.
    pub fn ok(&self) -> bool {
        self.completed && !self.errors.any()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// The human line.
    pub fn human(&self) -> String {
        let mut s = format!("{} [{}]", self.scenario, self.label);
        for (k, v) in &self.params {
            let _ = write!(s, " {k}={v}");
        }
        let (name, unit) = self.headline;
        let _ = write!(s, ": {} {unit}", self.metric(name).map_or_else(|| "?".into(), |v| format!("{v:.0}")));
        for (k, v) in &self.metrics {
            if *k != name {
                let _ = write!(s, ", {k} {}", if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") });
            }
        }
        let e = &self.errors;
        let _ = write!(s, "; lost {} dup {} reord {}", e.lost, e.duplicated, e.reordered);
        if e.foreign > 0 {
            let _ = write!(s, " foreign {}", e.foreign);
        }
        let pct =
            |c: Option<f64>| c.map_or_else(|| "?".into(), |c| format!("{:.0}%", 100.0 * c / self.run_s.max(1e-9)));
        if self.broker.cpu_s.is_some() {
            let _ = write!(
                s,
                "; broker cpu {} peak {}",
                pct(self.broker.cpu_s),
                self.broker.peak_kib.map_or_else(|| "?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
            );
        }
        let _ = write!(s, "; bench cpu {}; {:.2} s", pct(self.bench_cpu_s), self.wall_s);
        if !self.completed {
            s.push_str("; TIMED OUT");
        }
        s
    }

    /// The JSON line.
    pub fn json(&self) -> String {
        let mut s =
            format!("{{\"scenario\":{},\"label\":{},\"params\":{{", json_str(self.scenario), json_str(&self.label));
        for (i, (k, v)) in self.params.iter().enumerate() {
            let _ = write!(s, "{}{}:{}", if i > 0 { "," } else { "" }, json_str(k), json_str(v));
        }
        s.push_str("},\"metrics\":{");
        for (i, (k, v)) in self.metrics.iter().enumerate() {
            let _ = write!(s, "{}{}:{}", if i > 0 { "," } else { "" }, json_str(k), num(*v));
        }
        let e = &self.errors;
        let _ = write!(
            s,
            "}},\"headline\":{},\"lost\":{},\"duplicated\":{},\"reordered\":{},\"foreign\":{},\
             \"broker_cpu_s\":{},\"broker_peak_rss_kib\":{},\"broker_rss_kib\":{},\"bench_cpu_s\":{},\
             \"wall_s\":{},\"run_s\":{},\"completed\":{},\"ok\":{}}}",
            json_str(self.headline.0),
            e.lost,
            e.duplicated,
            e.reordered,
            e.foreign,
            opt(self.broker.cpu_s.map(|v| format!("{v:.3}"))),
            opt(self.broker.peak_kib),
            opt(self.broker.rss_kib),
            opt(self.bench_cpu_s.map(|v| format!("{v:.3}"))),
            num(self.wall_s),
            num(self.run_s),
            self.completed,
            self.ok()
        );
        s
    }
}
