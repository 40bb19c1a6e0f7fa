//! Resident memory of the server processes, from `/proc/<pid>/status`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
