//! `--memfree SIZE` and `--load N`: no task starts while the machine's available memory
//! is below SIZE or its one-minute load average above N. Running tasks are never
//! stopped by a gate. The machine is read (`sys::mem_available`, `sys::load_average`)
//! at most every [`RECHECK`], and the run loop wakes that often while a gate is closed.

use crate::size::human as size_text;
use std::time::{Duration, Instant};

/// How often the machine is read again while tasks wait.
pub const RECHECK: Duration = Duration::from_millis(250);

/// The gates asked for on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gates {
    /// `--memfree`: bytes of `MemAvailable` below which no task starts.
    pub memfree: Option<u64>,
    /// `--load`: the one-minute load average above which no task starts.
    pub load: Option<f64>,
}

impl Gates {
    pub fn any(&self) -> bool {
        self.memfree.is_some() || self.load.is_some()
    }

    /// Why no task may start, given what the machine says (`None` where it cannot be
    /// read: a gate that cannot be read never holds a run for ever).
    pub fn closed(&self, available: Option<u64>, load: Option<f64>) -> Option<String> {
        if let (Some(floor), Some(free)) = (self.memfree, available) {
            if free < floor {
                return Some(format!(
                    "memory {} free < {}",
                    size_text(free),
                    size_text(floor)
                ));
            }
        }
        if let (Some(ceiling), Some(load)) = (self.load, load) {
            if load > ceiling {
                return Some(format!("load {load:.2} > {ceiling}"));
            }
        }
        None
    }
}

/// The gates and their last reading.
#[derive(Debug)]
pub struct Gate {
    gates: Gates,
    read_at: Option<Instant>,
    closed: Option<String>,
}

impl Gate {
    pub fn new(gates: Gates) -> Gate {
        Gate {
            gates,
            read_at: None,
            closed: None,
        }
    }

    /// Why no task may start now, reading the machine again when the last reading is
    /// older than [`RECHECK`] (about 100 ms while the gate is open: a burst of starts
    /// does not read /proc each time).
    pub fn check(&mut self, now: Instant) -> Option<&str> {
        let every = match self.closed {
            Some(_) => RECHECK,
            None => Duration::from_millis(100),
        };
        if self
            .read_at
            .is_none_or(|at| now.saturating_duration_since(at) >= every)
        {
            self.read_at = Some(now);
            let available = self.gates.memfree.and_then(|_| crate::sys::mem_available());
            let load = self.gates.load.and_then(|_| crate::sys::load_average());
            self.closed = self.gates.closed(available, load);
        }
        self.closed.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_closes_below_its_memory_and_above_its_load() {
        let gates = Gates {
            memfree: Some(2 << 30),
            load: Some(2.0),
        };
        assert_eq!(
            gates.closed(Some(1288490189), Some(0.5)).as_deref(),
            Some("memory 1.2 GiB free < 2 GiB")
        );
        assert_eq!(
            gates.closed(Some(4 << 30), Some(3.1)).as_deref(),
            Some("load 3.10 > 2")
        );
        assert_eq!(gates.closed(Some(4 << 30), Some(2.0)), None);
        assert_eq!(gates.closed(None, None), None, "unreadable: open");
        let idle = Gates {
            memfree: None,
            load: Some(0.0),
        };
        assert_eq!(idle.closed(Some(1), Some(0.0)), None, "0 is not above 0");
        assert!(idle.closed(None, Some(0.01)).is_some());
    }

    #[test]
    fn the_machine_is_read() {
        assert!(crate::sys::mem_available().is_some_and(|m| m > 0));
        assert!(crate::sys::load_average().is_some_and(|l| l >= 0.0));
    }
}
