//! Resident memory and CPU time of processes, from `/proc`: the servers'
//! RSS is the idle figure, and both sides' CPU tells who limited a step.

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
}

/// Summed RSS of `pids` in KiB; `None` when one cannot be read.
pub fn rss_kib(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .as_deref()
                .and_then(parse_vm_rss_kib)
        })
        .sum()
}

/// (utime, stime) in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    // Fields after the parenthesised command name (which may hold spaces).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12th and 13th after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// CPU time of processes, seconds, split by where it was spent. The split matters
/// on loopback: the kernel time of a sender includes the receiver's TCP receive
/// path (softirq on the sending CPU), which on a real network runs on another host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// Summed CPU time of `pids` (those that cannot be read count 0).
pub fn cpu_time(pids: &[u32]) -> CpuTime {
    // USER_HZ is 100 on Linux for every architecture this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let (user, system) = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| parse_cpu_ticks(&stat))
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds));
    CpuTime {
        user: user as f64 / TICKS_PER_SECOND,
        system: system as f64 / TICKS_PER_SECOND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_table() {
        let cases = [
            (
                "plain",
                "42 (node) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0",
                Some((250, 50)),
            ),
            (
                "name with spaces and parens",
                "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0",
                Some((1, 2)),
            ),
            ("truncated", "7 (x) R 1 2", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse_cpu_ticks(input), want, "case {name}");
        }
        let own = cpu_time(&[std::process::id()]);
        assert!(own.user >= 0.0 && own.system >= 0.0);
    }

    #[test]
    fn parse_table() {
        let cases = [
            (
                "normal",
                "Name:\tx\nVmRSS:\t   12345 kB\nVmData: 1 kB\n",
                Some(12345),
            ),
            ("missing line", "Name:\tx\n", None),
            ("garbage number", "VmRSS:\t12x kB\n", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse_vm_rss_kib(input), want, "case {name}");
        }
    }

    #[test]
    fn own_process_has_rss() {
        assert!(rss_kib(&[std::process::id()]).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(&[u32::MAX]), None, "no such pid");
    }
}
