//! Reading what `ip -s xfrm state` and `ip xfrm policy` print (iproute2 6.x): the tests'
//! independent view of the kernel's IPsec state, next to what the agent reports.

use std::net::Ipv4Addr;

/// One SA as `ip -s xfrm state` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaText {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub reqid: u32,
    pub bytes: u64,
    pub packets: u64,
    /// `add` time (`YYYY-MM-DD HH:MM:SS`): when the kernel object was created.
    pub added: String,
    /// Packets dropped by the anti-replay check.
    pub replay: u64,
    /// Packets that failed authentication.
    pub failed: u64,
}

/// One policy as `ip xfrm policy` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyText {
    /// The selector line, e.g. `src 10.99.0.1/32 dst 10.99.0.2/32 proto udp dport 4790`.
    pub selector: String,
    /// `in`, `out`, `fwd`.
    pub dir: String,
    /// SPI and reqid of its (first) template.
    pub tmpl_spi: Option<u32>,
    pub tmpl_reqid: Option<u32>,
}

fn hex_or_dec(s: &str) -> Option<u32> {
    let s = s.split('(').next()?;
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn after<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| *w == key)?;
    words.get(i + 1).copied()
}

/// Blocks of `text` that start at a line beginning with `src `.
fn blocks(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("src ") {
            out.push(vec![line]);
        } else if let Some(b) = out.last_mut() {
            b.push(line);
        }
    }
    out
}

/// The SAs in `ip -s xfrm state` output.
pub fn parse_states(text: &str) -> Vec<SaText> {
    let mut out = Vec::new();
    for b in blocks(text) {
        let head: Vec<&str> = b[0].split_whitespace().collect();
        let (Some(src), Some(dst)) = (
            after(&head, "src").and_then(|s| s.parse().ok()),
            after(&head, "dst").and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        let mut sa = SaText {
            src,
            dst,
            spi: 0,
            reqid: 0,
            bytes: 0,
            packets: 0,
            added: String::new(),
            replay: 0,
            failed: 0,
        };
        let mut current = false;
        for line in &b[1..] {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&"proto") {
                sa.spi = after(&w, "spi").and_then(hex_or_dec).unwrap_or(0);
                sa.reqid = after(&w, "reqid").and_then(hex_or_dec).unwrap_or(0);
            } else if line.trim() == "lifetime current:" {
                current = true;
            } else if current && line.contains("(bytes),") {
                for part in line.split(',') {
                    let part = part.trim();
                    if let Some(n) = part.strip_suffix("(bytes)") {
                        sa.bytes = n.parse().unwrap_or(0);
                    } else if let Some(n) = part.strip_suffix("(packets)") {
                        sa.packets = n.parse().unwrap_or(0);
                    }
                }
            } else if current && w.first() == Some(&"add") {
                sa.added = w
                    .iter()
                    .skip(1)
                    .take(2)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                current = false;
            } else if w.first() == Some(&"replay-window") && w.contains(&"failed") {
                sa.replay = after(&w, "replay")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                sa.failed = after(&w, "failed")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
        }
        out.push(sa);
    }
    out
}

/// The policies in `ip xfrm policy` output.
pub fn parse_policies(text: &str) -> Vec<PolicyText> {
    let mut out = Vec::new();
    for b in blocks(text) {
        let mut p = PolicyText {
            selector: b[0].trim().to_string(),
            dir: String::new(),
            tmpl_spi: None,
            tmpl_reqid: None,
        };
        for line in &b[1..] {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.first() {
                Some(&"dir") => p.dir = w.get(1).unwrap_or(&"").to_string(),
                Some(&"proto") if p.tmpl_spi.is_none() => {
                    p.tmpl_spi = after(&w, "spi").and_then(hex_or_dec);
                    p.tmpl_reqid = after(&w, "reqid").and_then(hex_or_dec);
                }
                _ => {}
            }
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: &str = "src 10.99.0.1 dst 10.99.0.3
\tproto esp spi 0x16d239a0(382876064) reqid 1398230577(0x53574e31) mode transport
\treplay-window 0 seq 0x00000000 flag esn (0x10000000)
\taead rfc4106(gcm(aes)) 0x53f174e2454dc32a3d6323b6d7c8c6cede3cc066 (160 bits) 128
\tanti-replay esn context:
\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x1
\t replay_window 128, bitmap-length 4
\t 00000000 00000000 00000000 00000000 
\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\t  limit: soft (INF)(packets), hard (INF)(packets)
\t  expire add: soft 0(sec), hard 0(sec)
\t  expire use: soft 0(sec), hard 0(sec)
\tlifetime current:
\t  114(bytes), 1(packets)
\t  add 2026-12-04 17:16:21 use 2026-12-04 17:16:33
\tstats:
\t  replay-window 0 replay 2 failed 10
src 10.99.0.2 dst 10.99.0.1
\tproto esp spi 0x641048af(1678788783) reqid 7(0x00000007) mode transport
\tlifetime current:
\t  0(bytes), 0(packets)
\t  add 2026-12-04 17:15:52 use -
";

    const POLICIES: &str = "src 10.99.0.1/32 dst 10.99.0.3/32 proto udp dport 4790 
\tdir out priority 0 ptype main 
\ttmpl src 10.99.0.1 dst 10.99.0.3
\t\tproto esp spi 0x16d239a0 reqid 1398230577 mode transport
src 0.0.0.0/0 dst 0.0.0.0/0 
\tsocket in priority 0 ptype main 
";

    #[test]
    fn states_are_read_with_their_counters_and_creation_time() {
        let s = parse_states(STATES);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].src, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(s[0].spi, 0x16d2_39a0);
        assert_eq!(s[0].reqid, 0x5357_4e31);
        assert_eq!((s[0].bytes, s[0].packets), (114, 1));
        assert_eq!(s[0].added, "2026-12-04 17:16:21");
        assert_eq!((s[0].replay, s[0].failed), (2, 10));
        assert_eq!((s[1].reqid, s[1].packets), (7, 0));
        assert_eq!(s[1].added, "2026-12-04 17:15:52");
    }

    #[test]
    fn policies_are_read_with_their_template() {
        let p = parse_policies(POLICIES);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].selector,
            "src 10.99.0.1/32 dst 10.99.0.3/32 proto udp dport 4790"
        );
        assert_eq!(p[0].dir, "out");
        assert_eq!(p[0].tmpl_spi, Some(0x16d2_39a0));
        assert_eq!(p[0].tmpl_reqid, Some(0x5357_4e31));
        assert_eq!(p[1].tmpl_reqid, None);
    }
}
