//! The Markdown section for `BENCHMARKS.md`, and putting it between the markers of an
//! existing file.

use std::fmt::Write;

use loadgen::{Scenario, format_micros};

use crate::Results;
use crate::speed;
use crate::suite::{CpuUse, DatabaseRun, Point};

/// Steal above this many cores in a point gets a warning under its table: less is the
/// tick noise of an otherwise quiet VM.
const NOTABLE_STEAL_CORES: f64 = 0.05;
/// Core-speed probes further apart than this (percent) get a warning: more than timer
/// and cache noise.
const SPEED_SPREAD_NOTABLE_PERCENT: f64 = 10.0;
/// The same for the loopback probes, which are noisier: five probes within a minute on an
/// otherwise idle VM were 26 % apart.
const LOOPBACK_SPREAD_NOTABLE_PERCENT: f64 = 40.0;

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

/// The whole section, markers included.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let plan = &results.plan;
    let _ = writeln!(out, "{BEGIN}");
    let _ = writeln!(
        out,
        "<!-- Written by tools/bench: run it again rather than editing this section. -->"
    );
    let commit = m
        .commit
        .as_deref()
        .map(|c| format!(" (source tree at commit {c})"))
        .unwrap_or_default();
    let _ = writeln!(out, "Measured {}{commit}, with:\n", m.date);
    let _ = writeln!(out, "```sh\n{}\n```\n", results.command);
    let _ = writeln!(
        out,
        "- **Machine:** {} cores ({}), {}, {:.0} GiB of memory; load average {} at the start.",
        m.cores, m.cpu_model, m.kernel, m.memory_gib, m.load_average
    );
    let _ = writeln!(
        out,
        "- **Build:** order-service `{}` (binary of {}), load generator `{}`.",
        m.service_profile, m.service_built, m.loadgen_profile
    );
    let _ = writeln!(
        out,
        "- **Everything shares those {} cores:** the load generator, the platform sandbox \
         (inventory, payment and shipping, in one process) and the order service (and, for \
         PostgreSQL, its server). A service on its own machine would go faster. The last \
         column shows how the cores were used during each point (CPU seconds per second): \
         by the service, the sandbox, the load generator, everything else (the \
         PostgreSQL server, and anything else that ran), and the CPU the hypervisor took \
         (steal time: given to other guests, or spent on the host's side of this guest's \
         disk writes; on a shared VM the cores are not all ours).",
        m.cores
    );
    let mode = if results.smoke {
        " **Smoke run: too short for the numbers to mean much.**"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "- **Each point:** {} of warm-up, then {} measured, closed loop (each of N \
         connections sends its next request when the answer arrives); only requests that \
         finished inside the measured window count. Latencies are of successful requests \
         (HDR histogram).{mode}",
        seconds(plan.warmup.as_secs_f64()),
        seconds(plan.duration.as_secs_f64()),
    );
    let _ = writeln!(
        out,
        "- **Orders:** 1–{} lines over {} SKUs with unlimited stock, a new idempotency key \
         each; replays and reads use {} orders created before their point.",
        plan.max_items,
        plan.skus.len(),
        plan.pool_size
    );
    let mut env = String::from("`RUST_LOG=warn`, `LOG_FORMAT=json`");
    for (name, value) in &plan.service_env {
        let _ = write!(env, ", `{name}={value}`");
    }
    let _ = writeln!(
        out,
        "- **Service settings:** the defaults (e.g. `DATABASE_MAX_CONNECTIONS=16`), with {env}."
    );
    if plan.reserves_replay {
        let _ = writeln!(
            out,
            "- **Reserves replayed** (`--reserves-replay`): the sandbox's inventory replays \
             `POST /reserve` by `Idempotency-Key` and the service runs with \
             `INVENTORY_HONORS_IDEMPOTENCY_KEY=true`, so it saves the reservation with the \
             shipment (three durable writes per order instead of four)."
        );
    }
    if let Some(chart) = &results.chart {
        let _ = writeln!(
            out,
            "\n![POST /orders: throughput and p99 latency against concurrency, SQLite and \
             PostgreSQL]({chart})"
        );
    }
    for run in &results.databases {
        render_database(&mut out, run, plan.reference_concurrency);
    }
    let _ = writeln!(out, "{END}");
    out
}

fn render_database(out: &mut String, run: &DatabaseRun, reference: usize) {
    let _ = writeln!(out, "\n### {}\n", run.kind.name());
    let _ = writeln!(out, "{}.\n", run.description);
    let _ = writeln!(
        out,
        "| Scenario | Concurrency | Throughput (req/s) | p50 | p90 | p99 | p99.9 | max | \
         Errors | Service CPU s / 1k req | CPU cores: service / sandbox / loadgen / other / stolen |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|---|");
    for point in &run.points {
        render_row(out, point);
    }
    let _ = writeln!(out);
    let steal = run
        .points
        .iter()
        .map(|point| (point.report.scenario == Scenario::Create, &point.cpu));
    if let Some(note) = stolen_note(steal) {
        let _ = writeln!(out, "{note}");
    }
    if let Some(line) = speed_line(run.points.iter().filter_map(|point| point.core_speed)) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(line) = loopback_line(run.points.iter().filter_map(|point| point.loopback)) {
        let _ = writeln!(out, "{line}");
    }
    let health = run.point(Scenario::Health, reference);
    let orders = run.point(Scenario::Create, reference);
    if let (Some(health), Some(orders)) = (health, orders) {
        let ratio = orders.report.throughput / health.report.throughput.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "- `POST /orders` at {reference} runs at **{:.1} %** of `GET /health` at {reference} \
             ({} vs {} req/s): the price of the saga (four downstream calls: reserve, \
             pay, ship, commit, and the database writes) against the same server's ceiling.",
            ratio * 100.0,
            thousands(orders.report.throughput),
            thousands(health.report.throughput),
        );
    }
    let memory = &run.memory;
    let _ = writeln!(
        out,
        "- Peak RSS of order-service: **{}** (`VmHWM`, or a higher `VmRSS` sampled every \
         100 ms; {} right after start).",
        mib(memory.peak_kib.max(memory.sampled_peak_kib)),
        mib(memory.after_start_kib),
    );
    if let Some(cpu) = run.cpu_per_1k_orders() {
        let _ = writeln!(
            out,
            "- CPU of order-service: **{cpu:.2} s per 1,000 orders** (user + system, all \
             `POST /orders` points, warm-up included)."
        );
    }
}

/// A warning when the hypervisor took a notable share of the CPU during some point: the
/// numbers of such a run are lower than the machine can do, and vary from run to run.
/// Each point comes with whether it writes orders (to the disk, through the service or
/// its PostgreSQL server). When only those points lost CPU, the note says so: on a busy
/// host the hypervisor's work for the guest's own disk writes shows as steal time (on
/// 2026-12-06, two busy cores lost ~7 % to it while a third process wrote up to 160 MB/s
/// with `fdatasync`, and none without the writes), which a quieter machine may not
/// remove.
fn stolen_note<'a>(points: impl IntoIterator<Item = (bool, &'a CpuUse)>) -> Option<String> {
    // The most stolen in a writing point, and in a reading one (`None`: no such point).
    let (mut most_writing, mut most_reading) = (0.0_f64, None::<f64>);
    for (writes, cpu) in points {
        let stolen = cpu.cores(cpu.stolen);
        if writes {
            most_writing = most_writing.max(stolen);
        } else {
            most_reading = Some(most_reading.unwrap_or(0.0).max(stolen));
        }
    }
    let most = most_writing.max(most_reading.unwrap_or(0.0));
    if most <= NOTABLE_STEAL_CORES {
        return None;
    }
    let only_writing = most_reading.is_some_and(|reading| reading <= NOTABLE_STEAL_CORES);
    Some(format!(
        "- **The hypervisor took CPU from this run:** up to **{most:.2} cores** of steal \
         time (`/proc/stat`) during a point (last column). The numbers are lower than \
         these cores can do and vary between runs; compare the ratio to `GET /health`, \
         or run again on a quieter machine.{}",
        if only_writing {
            " It was taken only during the points that write orders, none during those \
             that only read: likely the host's work for this run's own disk writes, \
             which competes with the guest's cores when the host is busy, rather than \
             other guests alone."
        } else {
            ""
        }
    ))
}

/// The range of the core-speed probes of a table's points: a wide one means the machine's
/// speed changed during the run (other guests on the same cores), so its points do not
/// compare well with each other or with another run.
fn speed_line(probes: impl IntoIterator<Item = f64>) -> Option<String> {
    probe_line(
        "Core speed before each point (a fixed single-core loop, `tools/bench/src/speed.rs`; \
         comparable only with itself)",
        "M steps/s",
        SPEED_SPREAD_NOTABLE_PERCENT,
        probes,
    )
}

/// The range of the loopback probes of a table's points: how fast this machine passes a
/// message between two threads over TCP, which the core speed does not show.
fn loopback_line(probes: impl IntoIterator<Item = f64>) -> Option<String> {
    probe_line(
        "Loopback round trips before each point (one byte back and forth between two \
         threads over TCP on 127.0.0.1, `tools/bench/src/loopback.rs`; comparable only with \
         itself; the machine's system calls and thread wake-ups, which the core speed does \
         not show)",
        "thousand/s",
        LOOPBACK_SPREAD_NOTABLE_PERCENT,
        probes,
    )
}

/// `- {what}: {low}–{high} {unit}, **N % apart**`, with a warning when they are more
/// than `notable_percent` apart.
fn probe_line(
    what: &str,
    unit: &str,
    notable_percent: f64,
    probes: impl IntoIterator<Item = f64>,
) -> Option<String> {
    let (low, high) = speed::range(probes)?;
    let spread = (high / low.max(f64::MIN_POSITIVE) - 1.0) * 100.0;
    Some(format!(
        "- {what}: {low:.0}–{high:.0} {unit}, **{spread:.0} % apart**{}.",
        if spread > notable_percent {
            ": the machine changed speed during this run"
        } else {
            ""
        }
    ))
}

fn render_row(out: &mut String, point: &Point) {
    let r = &point.report;
    let l = &r.latency_us;
    let cpu = &point.cpu;
    let per_1k = point
        .service_cpu_per_1k()
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {per_1k} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} |",
        r.scenario.label(),
        r.concurrency,
        thousands(r.throughput),
        format_micros(l.p50),
        format_micros(l.p90),
        format_micros(l.p99),
        format_micros(l.p999),
        format_micros(l.max),
        errors(r),
        cpu.cores(cpu.service),
        cpu.cores(cpu.sandbox),
        cpu.cores(cpu.loadgen),
        cpu.cores(cpu.other),
        cpu.cores(cpu.stolen),
    );
}

/// `0`, or `3 (409: 3)`.
pub fn errors(r: &loadgen::Report) -> String {
    if r.errors == 0 {
        "0".into()
    } else {
        format!("{} ({})", r.errors, r.error_summary())
    }
}

/// `1,234` (no decimals from 100 up), `12.3` below.
pub fn thousands(value: f64) -> String {
    if value < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn seconds(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0} s")
    } else {
        format!("{value} s")
    }
}

/// `existing` with the section between the markers replaced by `section`; the section
/// is appended when there are no markers, and makes up a new file when there is none.
pub fn splice(existing: Option<&str>, section: &str) -> String {
    let Some(text) = existing else {
        return format!(
            "# Benchmarks\n\nHow fast the order service is on one small machine; see \
             [tools/bench](tools/bench/README.md) for how to run it on yours.\n\n{section}"
        );
    };
    match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &text[end + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section}{after}", &text[..begin])
        }
        _ => {
            let separator = if text.ends_with("\n\n") || text.is_empty() {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{text}{separator}{section}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_section_between_the_markers_is_replaced() {
        let old = format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n");
        let new = splice(Some(&old), &format!("{BEGIN}\nnew\n{END}\n"));
        assert_eq!(
            new,
            format!("# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\nafter\n")
        );
    }

    #[test]
    fn a_file_without_markers_gets_the_section_appended() {
        let section = format!("{BEGIN}\nx\n{END}\n");
        assert_eq!(splice(Some("# B\n"), &section), format!("# B\n\n{section}"));
        assert!(splice(None, &section).ends_with(&section));
    }

    /// A point's use of the cores in a 10 s point, with `stolen` CPU seconds of steal.
    fn cpu(stolen: f64) -> CpuUse {
        CpuUse {
            service: 1.0,
            sandbox: 0.5,
            loadgen: 0.2,
            other: 0.0,
            stolen,
            wall: 10.0,
        }
    }

    #[test]
    fn only_a_notable_steal_gets_a_warning() {
        assert_eq!(stolen_note([(false, &cpu(0.0)), (true, &cpu(0.4))]), None);
        let note =
            stolen_note([(false, &cpu(0.0)), (true, &cpu(7.5)), (false, &cpu(2.0))]).unwrap();
        assert!(note.contains("up to **0.75 cores**"), "{note}");
    }

    #[test]
    fn steal_only_while_writing_is_told_apart() {
        const ONLY_WRITING: &str = "only during the points that write orders";
        let writing =
            stolen_note([(false, &cpu(0.0)), (true, &cpu(1.5)), (false, &cpu(0.3))]).unwrap();
        assert!(writing.contains(ONLY_WRITING), "{writing}");
        let everywhere = stolen_note([(false, &cpu(1.0)), (true, &cpu(1.5))]).unwrap();
        assert!(!everywhere.contains(ONLY_WRITING), "{everywhere}");
        // Without a reading point to compare with, nothing tells where it came from.
        let no_reads = stolen_note([(true, &cpu(1.5))]).unwrap();
        assert!(!no_reads.contains(ONLY_WRITING), "{no_reads}");
    }

    #[test]
    fn a_wide_spread_of_core_speed_is_called_out() {
        assert_eq!(speed_line([]), None);
        let steady = speed_line([200.0, 205.0]).unwrap();
        assert!(
            steady.contains("200–205 M steps/s, **2 % apart**."),
            "{steady}"
        );
        let changing = speed_line([300.0, 150.0, 250.0]).unwrap();
        assert!(
            changing.contains("**100 % apart**: the machine changed speed"),
            "{changing}"
        );
    }

    #[test]
    fn the_loopback_probes_get_a_line_of_their_own() {
        assert_eq!(loopback_line([]), None);
        let line = loopback_line([20.4, 21.0]).unwrap();
        assert!(line.starts_with("- Loopback round trips"), "{line}");
        assert!(line.contains("20–21 thousand/s, **3 % apart**."), "{line}");
        // Noisier than the core speed: 30 % is not yet a change of machine, 50 % is.
        let noisy = loopback_line([10.0, 13.0]).unwrap();
        assert!(noisy.contains("**30 % apart**."), "{noisy}");
        let changing = loopback_line([10.0, 15.0]).unwrap();
        assert!(
            changing.contains("**50 % apart**: the machine changed speed"),
            "{changing}"
        );
    }

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(612.6), "613");
        assert_eq!(thousands(12.34), "12.3");
    }
}
