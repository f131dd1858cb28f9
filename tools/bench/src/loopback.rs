//! How fast this machine hands a message from one thread to another over loopback TCP
//! right now: one byte sent back and forth between two threads, timed before every point.
//!
//! The core-speed probe ([`crate::speed`]) times computation only, and it can miss most
//! of what makes a machine slow for this benchmark. On 2026-12-06 one machine's cores
//! computed ~13 % slower than the record's while `GET /health` at 64 ran at half its
//! rate: system calls, loopback TCP and waking a thread on the other core cost twice as
//! much there. An order is a dozen such hand-offs between the load generator, the
//! service, the sandbox and the database, and this probe times one kind of them. It is
//! no full answer yet: that slow machine gave 7,000–13,000 round trips a second, and a
//! later one whose `/health` ran ~1.7 times as fast gave 11,000–14,000.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Round trips per timing: 20–100 ms on the machines seen (10,000–45,000 a second).
const ROUND_TRIPS: u32 = 1000;
/// Timings per probe; the median is kept, so that one preemption does not decide it.
const TIMINGS: usize = 5;

/// Thousands of round trips per second between two threads on two different cores over
/// a loopback TCP connection, now (median of a few timings, ~0.1–0.5 s in all). Higher
/// is faster; only comparable with itself.
///
/// The threads are pinned to the first two cores: left to the scheduler, they sometimes
/// share one core, where a wake-up costs a fraction of one sent to the other core (one
/// VM gave 8,300–9,200 or 45,000 round trips a second from one run to the next). Under
/// load the benchmark's processes wake each other across cores, so that is what is
/// timed. With one core both threads stay on it.
pub fn probe() -> std::io::Result<f64> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (prober_core, echo_core) = (cores.first().copied(), cores.get(1).copied());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let address = listener.local_addr()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        pin(echo_core);
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        // Until the prober hangs up.
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    // On a thread of its own, so that the caller's affinity is left as it was.
    let prober = thread::spawn(move || -> std::io::Result<Vec<f64>> {
        pin(prober_core);
        let mut stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        let mut rates = Vec::with_capacity(TIMINGS);
        for _ in 0..TIMINGS {
            rates.push(round_trips_per_second(&mut stream, ROUND_TRIPS)? / 1e3);
        }
        Ok(rates)
    });
    // A prober that failed before it connected leaves the echo thread waiting to accept:
    // it is then left behind, not joined.
    let rates = prober
        .join()
        .map_err(|_| std::io::Error::other("the probing thread panicked"))??;
    echo.join()
        .map_err(|_| std::io::Error::other("the echo thread panicked"))??;
    Ok(crate::speed::median(rates))
}

/// Keeps the calling thread on `core`, if there is one and the system lets it (a
/// container may not): the probe still runs, only less steadily.
fn pin(core: Option<core_affinity::CoreId>) {
    if let Some(core) = core {
        core_affinity::set_for_current(core);
    }
}

/// Times `round_trips` exchanges of one byte with the echo at the other end of `stream`.
fn round_trips_per_second(stream: &mut TcpStream, round_trips: u32) -> std::io::Result<f64> {
    let mut byte = [7u8; 1];
    let started = Instant::now();
    for _ in 0..round_trips {
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
    }
    let elapsed = started.elapsed().max(Duration::from_nanos(1));
    Ok(f64::from(round_trips) / elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_round_trips() {
        let rate = probe().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
        eprintln!("loopback probe: {rate:.1} thousand round trips/s");
    }
}
