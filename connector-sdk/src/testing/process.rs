//! What the kernel knows about a process (Linux): resident memory (`VmRSS`,
//! and its high-water mark `VmHWM`, from `/proc/<pid>/status`) and CPU time
//! (`utime + stime` from `/proc/<pid>/stat`, which also counts the threads
//! that already exited). The memory tests read their own process with it;
//! the bench reads the sink it started.

use std::io;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// The most it was ever resident (`VmHWM`).
    pub peak_kib: u64,
}

/// The value of a `Name:   1234 kB` line of a /proc file, in KiB.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        kib_field(&status, name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status has no {name}"),
            )
        })
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// User plus system CPU time of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read utime/stime from /proc/{pid}/stat"),
        )
    })
}

/// `utime` and `stime` are fields 14 and 15; the command name (field 2) may
/// hold spaces and parentheses, so count from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_and_15() {
        let stat = "1234 (sink (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let me = std::process::id();
        let memory = memory(me).expect("own status");
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        cpu_ticks(me).expect("own stat");
    }
}
